package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMemoryExecTTL runs jobs through the binary with exec_ttl 1s: slow
// jobs that together run far past 1s, each well under it, are all acked
// on their first attempt (exec_ttl counts from each job's start); a job
// that hangs is cut off after about 1s, its worker replaced, and the job
// retried and acked on attempt 2.
func TestMemoryExecTTL(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, e2eConfigPool(t, behaveWorker, log, `    num_workers: 1
    supervisor:
      exec_ttl: 1s
`, "", `      driver: memory
      retry:
        max_attempts: 3
        backoff: {initial: 100ms, max: 1s, multiplier: 2, jitter: 0}
`))

	s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "300", "--count", "8")
	s.mustCLI("push", "--pipeline", "default", "--job", "hang-once", "--payload", "x")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 9 })
	if st.Retried != 1 || st.Dead != 0 {
		t.Fatalf("want 9 acked, 1 retried (the hung job), 0 dead; got %+v", st)
	}
	var hungPids []string
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		if f[0] != "start" {
			continue
		}
		switch f[4] {
		case "slow":
			if f[2] != "1" {
				t.Errorf("slow job %s ran again (attempt %s): exec_ttl cut it off", f[1], f[2])
			}
		case "hang-once":
			hungPids = append(hungPids, f[3])
		}
	}
	if len(hungPids) != 2 || hungPids[0] == hungPids[1] {
		t.Fatalf("hang-once ran in workers %v, want two runs in two different workers", hungPids)
	}
}
