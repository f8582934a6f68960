package tests

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// A burst of jobs that take their worker down does not empty the pool:
// each worker a job killed is replaced at once (no respawn backoff, which
// is for workers that fail to start), every job runs to its ack, and the
// pool is at full size at the end.
func TestCrashingJobBurstKeepsThePoolServing(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	const workers = 2
	s := startSupervisor(t, memoryConfig(t, workers, log))

	var jobs []consumer.Job
	for i := range 20 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("crash-%02d", i), Name: "crash-once", Pipeline: "default", Payload: []byte("x")})
	}
	for i := range 200 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("good-%03d", i), Name: "ack", Pipeline: "default", Payload: []byte("x")})
	}
	s.rpcPush(jobs, 220)
	// With a respawn backoff for each crash (up to 5 s) this takes over a
	// minute; replaced at once, a few seconds.
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 220 })
	if st.Dead != 0 || st.Retried != 20 {
		t.Fatalf("want 220 acked, 20 retried once, none dead; got %+v", st)
	}
	done := dones(t, log)
	for _, j := range jobs {
		if done[j.ID] != 1 {
			t.Fatalf("job %s finished %d times, want once", j.ID, done[j.ID])
		}
	}
	if pids := s.workerPids(); len(pids) != workers {
		t.Fatalf("%d workers at the end, want %d", len(pids), workers)
	}
}
