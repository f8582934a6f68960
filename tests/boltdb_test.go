package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
)

// boltConfig is a .rr.yaml running behave.php on one boltdb pipeline
// "default" in file db; extra is added to the pipeline's keys.
func boltConfig(t *testing.T, workers int, log, db, extra string) string {
	t.Helper()
	return e2eConfig(t, behaveWorker, log, workers, "", fmt.Sprintf(`      driver: boltdb
      config:
        file: %q
%s`, db, extra))
}

// kill9 appends a "kill" line to the worker log (so the log shows which
// runs came before the crash) and kills the supervisor with SIGKILL.
func (s *supervisor) kill9(log string) {
	s.t.Helper()
	f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := f.WriteString("kill\n"); err != nil {
		s.t.Fatal(err)
	}
	f.Close()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	s.wait(10 * time.Second)
}

// countDone returns how many "done" lines log has.
func countDone(t *testing.T, log string) int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\ndone ")) + map[bool]int{true: 1}[bytes.HasPrefix(b, []byte("done "))]
}

// waitDone polls the worker log until it has at least n done lines.
func waitDone(t *testing.T, log string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for countDone(t, log) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d done lines after %v, want %d", countDone(t, log), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Jobs survive kill -9 of the supervisor at any point: 10,000 jobs are
// pushed, the supervisor is killed right after the push and twice more at
// random points while it works, and restarted each time. Every job is
// acked at least once; a job runs again after its ack only when the
// supervisor was killed in between (its ack was in the last moment before
// the crash); its attempt never goes down, and a job that runs again after
// a crash does so with a higher attempt than at its last run before the
// crash (the crash counted it, however soon after its start it came).
func TestBoltDBKill9LosesNoJob(t *testing.T) {
	requireTool(t, "php")
	const n = 10000
	dir := t.TempDir()
	log, db := filepath.Join(dir, "jobs.log"), filepath.Join(dir, "jobs.db")
	cfg := boltConfig(t, 2, log, db, "")

	s := startConsuming(t, cfg)
	jobs := make([]consumer.Job, n)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("job-%05d", i), Name: "ack", Pipeline: "default", Payload: []byte("x")}
	}
	s.rpcPush(jobs, 500)
	s.kill9(log)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	// reported[g]: the acks the supervisor of generation g (the number of
	// kills before it) reported as settled just before it was killed.
	reported := map[int]uint64{}
	for round := range 2 {
		s = startConsuming(t, cfg)
		at := countDone(t, log) + 500 + rng.IntN(2500)
		waitDone(t, log, min(at, n-200), 60*time.Second)
		reported[round+1] = s.stat("default").Acked
		t.Logf("round %d: killed at %d done lines, %d acks reported", round+1, countDone(t, log), reported[round+1])
		s.kill9(log)
	}
	s = startConsuming(t, cfg)
	s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Ready == 0 && st.Active == 0 && st.Delayed == 0 })
	if code := s.terminate(); code != 0 {
		t.Fatalf("supervisor exit %d", code)
	}

	// A worker's generation is the number of kills before its first
	// start line; a done line belongs to the generation of the worker
	// that ran it (a worker orphaned by a kill may still write it after
	// the kill line).
	type state struct {
		acked      bool
		ackedGen   int // generation of the worker that acked it last
		lastPID    string
		maxAttempt int
		ran        bool
		lastGen    int  // generation of the worker of its last run
		lastAtt    int  // attempt of its last run
		ackPending bool // acked, and not run since
	}
	jobsSeen := map[string]*state{}
	genOf := map[string]int{}
	kills, reruns, crashReruns := 0, 0, 0
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		switch f[0] {
		case "kill":
			kills++
		case "start":
			st := jobsSeen[f[1]]
			if st == nil {
				st = &state{}
				jobsSeen[f[1]] = st
			}
			pid := f[3]
			if _, ok := genOf[pid]; !ok {
				genOf[pid] = kills
			}
			attempt, _ := strconv.Atoi(f[2])
			if attempt < st.maxAttempt {
				t.Errorf("job %s ran with attempt %d after attempt %d", f[1], attempt, st.maxAttempt)
			}
			st.maxAttempt = max(st.maxAttempt, attempt)
			if gen := genOf[pid]; st.ran && gen > st.lastGen {
				crashReruns++
				if attempt <= st.lastAtt {
					t.Errorf("job %s ran with attempt %d after a crash, at attempt %d before it: the crash did not count it", f[1], attempt, st.lastAtt)
				}
			}
			st.ran, st.lastGen, st.lastAtt = true, genOf[pid], attempt
			st.ackPending = false
			if st.acked {
				reruns++
				if st.ackedGen == genOf[pid] {
					t.Errorf("job %s ran again after its ack by the same supervisor (no crash in between)", f[1])
				}
			}
			st.lastPID = pid
		case "done":
			if st := jobsSeen[f[1]]; st != nil && f[3] == "ack" {
				st.acked, st.ackedGen, st.ackPending = true, genOf[st.lastPID], true
			}
		}
	}
	if kills != 3 {
		t.Fatalf("%d kill lines, want 3", kills)
	}
	// An ack the supervisor reported as settled is on disk: the job never
	// runs again, so each killed supervisor has at least as many acks
	// that held as it reported.
	held := map[int]uint64{}
	for _, st := range jobsSeen {
		if st.ackPending {
			held[st.ackedGen]++
		}
	}
	for g, n := range reported {
		if held[g] < n {
			t.Errorf("the supervisor killed after %d crashes reported %d acks, but only %d of its acks held after the crash", g, n, held[g])
		}
	}
	for _, j := range jobs {
		if st := jobsSeen[j.ID]; st == nil || !st.acked {
			t.Errorf("job %s never acked", j.ID)
		}
	}
	if len(jobsSeen) != n {
		t.Errorf("%d distinct jobs ran, want %d", len(jobsSeen), n)
	}
	// Only the jobs acked in the last commit or two before a crash may
	// run again (how many depends on the disk's fsync time): never a
	// replay of the queue.
	if reruns > n/4 {
		t.Errorf("%d jobs ran again after their ack over %d crashes", reruns, kills)
	}
	t.Logf("%d jobs, %d crashes, %d ran again after an ack settled just before a crash, %d ran again after a crash (each with its attempt counted)", n, kills, reruns, crashReruns)
}

// doneAt returns when the worker log first has a done line for id,
// polling it.
func doneAt(t *testing.T, log, id string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if d := dones(t, log)[id]; d > 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not done within %v", id, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A delayed job keeps its due time across restarts (kill -9 and SIGTERM):
// the delay is a deadline, not started again.
func TestBoltDBDelayKeepsDueTimeAcrossRestarts(t *testing.T) {
	requireTool(t, "php")
	const delay = 4 * time.Second
	dir := t.TempDir()
	log, db := filepath.Join(dir, "jobs.log"), filepath.Join(dir, "jobs.db")
	cfg := boltConfig(t, 1, log, db, "")
	s := startConsuming(t, cfg)
	start := time.Now()
	s.rpcPush([]consumer.Job{{ID: "later", Name: "ack", Pipeline: "default", Delay: delay}}, 1)
	s.kill9(log)
	s = startConsuming(t, cfg)
	if st := s.stat("default"); st.Delayed != 1 {
		t.Fatalf("after kill -9 and restart: %+v, want 1 delayed", st)
	}
	// The job stays delayed through the first half of its delay; then a
	// second restart, which would start a restarted delay late enough to
	// tell.
	s.waitStat("default", delay, func(st pipelineStat) bool {
		if st.Delayed != 1 {
			t.Fatalf("delayed job left the delay %v after its push: %+v", time.Since(start), st)
		}
		return time.Since(start) >= delay/2
	})
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	s = startConsuming(t, cfg)
	restarted := time.Since(start)
	at := doneAt(t, log, "later", 2*delay).Sub(start)
	if at < delay || at > delay+restarted/2 {
		t.Errorf("delayed job done %v after its push, the second restart %v after it; want %v (a deadline)", at, restarted, delay)
	}
}

// Dead jobs stay dead across restarts: in the file's dead bucket, never
// run again.
func TestBoltDBDeadJobsStayDead(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	log, db := filepath.Join(dir, "jobs.log"), filepath.Join(dir, "jobs.db")
	cfg := boltConfig(t, 1, log, db, `      retry:
        max_attempts: 2
        backoff: {initial: 50ms, max: 50ms}
`)
	s := startConsuming(t, cfg)
	s.rpcPush([]consumer.Job{{ID: "poison", Name: "always-fail", Pipeline: "default"}}, 1)
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Dead == 1 })
	s.kill9(log)
	s = startConsuming(t, cfg)
	s.rpcPush([]consumer.Job{{ID: "fine", Name: "ack", Pipeline: "default"}}, 1)
	doneAt(t, log, "fine", 30*time.Second)
	if st := s.stat("default"); st.Ready != 0 || st.Active != 0 || st.Delayed != 0 {
		t.Errorf("after restart: %+v, want nothing queued", st)
	}
	if rows := s.failedList(); len(rows) != 1 || rows[0].ID != "poison" || rows[0].Attempts != 2 || rows[0].Reason == "" {
		t.Errorf("jobs failed list after a restart = %+v, want poison at attempt 2 with its reason", rows)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if starts, _ := runs(t, log); starts["poison"] != 2 {
		t.Errorf("poison ran %d times, want 2 (max_attempts), none after the restart", starts["poison"])
	}
	dead, err := boltjobs.ReadDead(db, "default")
	if err != nil || len(dead) != 1 || dead[0].Job.ID != "poison" || dead[0].Attempts != 2 {
		t.Fatalf("dead bucket = %+v, %v; want poison at attempt 2", dead, err)
	}

	// Retried from the CLI, it leaves the dead bucket and runs again.
	s = startConsuming(t, cfg)
	if out := s.mustCLI("jobs", "failed", "retry", "poison"); !strings.Contains(out, "retried 1 failed job") {
		t.Errorf("jobs failed retry said %q", out)
	}
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Dead == 1 })
	if starts, _ := runs(t, log); starts["poison"] != 4 {
		t.Errorf("poison ran %d times, want 4 (2 more after the retry)", starts["poison"])
	}
}

// serveFails runs `supervisor serve -c cfg` and returns its exit code and
// output; the test fails unless it exits within timeout.
func serveFails(t *testing.T, cfg string, timeout time.Duration) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testEnv.bin, "serve", "-c", cfg)
	cmd.Dir = testEnv.repoRoot
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("serve still running after %v:\n%s", timeout, out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("serve exited with %v:\n%s", err, out)
	}
	return ee.ExitCode(), string(out)
}

// A damaged database file stops the supervisor at start with an error
// naming the file; it is never taken for an empty queue.
func TestBoltDBDamagedFileIsAnError(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	log, db := filepath.Join(dir, "jobs.log"), filepath.Join(dir, "jobs.db")
	cfg := boltConfig(t, 1, log, db, "")
	s := startConsuming(t, cfg)
	t.Run("second supervisor", func(t *testing.T) {
		start := time.Now()
		code, out := serveFails(t, boltConfig(t, 1, log, db, ""), 20*time.Second)
		if code == 0 || !strings.Contains(out, db) || !strings.Contains(out, "in use by another process") {
			t.Errorf("second supervisor on %s: exit %d:\n%s", db, code, out)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("second supervisor took %v to fail", el)
		}
	})
	// A file of many pages: 3,000 jobs queued on a paused pipeline.
	s.mustCLI("jobs", "pause", "default")
	var jobs []consumer.Job
	for i := range 3000 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("j%d", i), Name: "ack", Pipeline: "default", Payload: bytes.Repeat([]byte("p"), 200)})
	}
	s.rpcPush(jobs, 1000)
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	valid, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	damage := map[string]func() []byte{
		"truncated": func() []byte { return valid[:len(valid)/2] },
		"garbled": func() []byte {
			b := bytes.Clone(valid)
			for off := 2 * os.Getpagesize(); off+4096 < len(b); off += 3 * 4096 {
				copy(b[off:], bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1024))
			}
			return b
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(db, fn(), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out := serveFails(t, cfg, 20*time.Second)
			if code == 0 || !strings.Contains(out, db) || !strings.Contains(out, "corrupt") {
				t.Errorf("serve on a %s file: exit %d:\n%s", name, code, out)
			}
		})
	}
}
