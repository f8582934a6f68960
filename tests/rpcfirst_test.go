package tests

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Workers may call the jobs RPC (declare, resume, push, stat) before they
// answer their handshake: the supervisor serves the RPC while its workers
// start, and every job pushed that way runs.
func TestWorkerUsesRPCBeforeItsFirstJob(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	const workers = 2
	s := startSupervisor(t, memoryConfigWith(t, "php tests/testdata/workers/rpc-first.php", workers, log))

	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == workers })
	if st.Dead != 0 || st.Retried != 0 {
		t.Fatalf("default: %+v", st)
	}
	pids := s.workerPids()
	if len(pids) != workers {
		t.Fatalf("%d workers running, want %d", len(pids), workers)
	}
	for _, pid := range pids {
		name := "early-" + strconv.Itoa(pid)
		s.waitStat(name, 30*time.Second, func(st pipelineStat) bool { return st.Acked == 3 })
	}
	perPipeline := map[string]int{}
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		perPipeline[f[2]]++
	}
	if perPipeline["default"] != workers || len(perPipeline) != workers+1 {
		t.Fatalf("jobs run per pipeline: %v", perPipeline)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
