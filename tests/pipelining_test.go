package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests of jobs.pool.pipelining: a slot takes up to N ready jobs
// of the memory driver at once and the pool writes them to one worker ahead
// of their replies. What a user must see is the same as with pipelining 1:
// every job acked exactly once, a job a worker did not start runs elsewhere
// at no cost, a crash costs the running job one attempt, exec_ttl counts
// per job.

// pipeliningConfig writes a .rr.yaml for workers workers of command with
// pipelining 8 (plus the jobs.pool keys in pool, each line indented by 4
// spaces) on the memory pipeline "default" with retry max_attempts.
func pipeliningConfig(t *testing.T, command, log string, workers int, pool string, maxAttempts int) string {
	t.Helper()
	return e2eConfigPool(t, command, log, fmt.Sprintf("    num_workers: %d\n    pipelining: 8\n", workers)+pool, "",
		fmt.Sprintf(`      driver: memory
      config:
        priority: 10
      retry:
        max_attempts: %d
        backoff: {initial: 100ms, max: 1s, multiplier: 2, jitter: 0}
`, maxAttempts))
}

// pushAll runs each push (the arguments of `supervisor push` after
// --pipeline default) while the pipeline is paused, then resumes it: the
// jobs are all ready when the slots look, so they go out in full batches.
func (s *supervisor) pushAll(pushes ...[]string) {
	s.t.Helper()
	s.mustCLI("jobs", "pause", "default")
	for _, args := range pushes {
		s.mustCLI(append([]string{"push", "--pipeline", "default"}, args...)...)
	}
	s.mustCLI("jobs", "resume", "default")
}

// jobRun is one start line of a worker log: "start <id> <attempt> <pid> <name>".
type jobRun struct {
	attempt int
	pid     string
	name    string
}

// startsByID returns the start lines of log per job id, in log order.
func startsByID(t *testing.T, log string) map[string][]jobRun {
	t.Helper()
	out := map[string][]jobRun{}
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		if f[0] != "start" {
			continue
		}
		if len(f) != 5 {
			t.Fatalf("bad start line %q", l)
		}
		a, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("bad start line %q", l)
		}
		out[f[1]] = append(out[f[1]], jobRun{attempt: a, pid: f[3], name: f[4]})
	}
	return out
}

// waitDones waits up to 5s for n distinct jobs with a done line in log (a
// worker writes it just after its reply, so it may lag behind the stat)
// and returns the done lines per id.
func waitDones(t *testing.T, log string, n int) map[string]int {
	t.Helper()
	d := dones(t, log)
	for deadline := time.Now().Add(5 * time.Second); len(d) < n && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		d = dones(t, log)
	}
	return d
}

// checkOnceEach fails the test unless log shows n distinct jobs, each
// started once, on attempt 1, and finished once.
func checkOnceEach(t *testing.T, log string, n int) map[string][]jobRun {
	t.Helper()
	starts := startsByID(t, log)
	if len(starts) != n {
		t.Errorf("workers started %d distinct jobs, want %d", len(starts), n)
	}
	for id, rs := range starts {
		if len(rs) != 1 || rs[0].attempt != 1 {
			t.Errorf("job %s ran %d times: %+v; want once, on attempt 1", id, len(rs), rs)
		}
	}
	d := waitDones(t, log, n)
	if len(d) != n {
		t.Errorf("workers finished %d distinct jobs, want %d", len(d), n)
	}
	for id, c := range d {
		if c != 1 {
			t.Errorf("job %s finished %d times", id, c)
		}
	}
	return starts
}

// settled waits until acked and dead together reach want (the pushed
// jobs), then a little longer, and returns the stat, failing unless
// exactly want are acked and nothing is left.
func (s *supervisor) settled(want uint64, timeout time.Duration) pipelineStat {
	s.t.Helper()
	s.waitStat("default", timeout, func(st pipelineStat) bool { return st.Acked+st.Dead >= want })
	time.Sleep(300 * time.Millisecond)
	st := s.stat("default")
	if st.Acked != want || st.Ready != 0 || st.Active != 0 || st.Delayed != 0 {
		s.t.Fatalf("want %d acked and nothing left; got %+v", want, st)
	}
	return st
}

func TestPipelining2000JobsAckedOnceEach(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	log := filepath.Join(dir, "jobs.log")
	s := startConsuming(t, pipeliningConfig(t, behaveWorker, log, 2, "", 3))

	// Payloads of three sizes: many frames fit the pipe window at once,
	// a few, or only one (a frame larger than the window goes alone).
	medium, large := filepath.Join(dir, "medium"), filepath.Join(dir, "large")
	for p, n := range map[string]int{medium: 1500, large: 6000} {
		if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// 1000 pushed while paused (full batches from the start), 1000 while
	// the workers run.
	s.pushAll([]string{"--job", "ack", "--payload", "small", "--count", "1000"})
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload-file", medium, "--count", "500")
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload-file", large, "--count", "500")

	st := s.settled(2000, 120*time.Second)
	if st.Retried != 0 || st.Requeued != 0 || st.Dead != 0 {
		t.Fatalf("want 2000 acked, none retried, requeued or dead; got %+v", st)
	}
	checkOnceEach(t, log, 2000)
}

// TestPipeliningWorkerThatExitsOnItsOwn: a worker that leaves after 5
// jobs without asking (maxjobs.php/.py) has jobs written behind its fifth
// in its stdin; they run on other workers and spend no attempt, so with
// max_attempts 1 none is dead or retried.
func TestPipeliningWorkerThatExitsOnItsOwn(t *testing.T) {
	for _, tc := range []struct{ name, tool, command string }{
		{"php", "php", "php tests/testdata/workers/maxjobs.php"},
		{"python", "python3", "python3 tests/testdata/workers/maxjobs.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireTool(t, tc.tool)
			log := filepath.Join(t.TempDir(), "jobs.log")
			s := startConsuming(t, pipeliningConfig(t, tc.command, log, 2, "", 1))

			s.pushAll([]string{"--job", "ack", "--payload", "x", "--count", "500"})
			st := s.settled(500, 180*time.Second)
			if st.Dead != 0 || st.Retried != 0 || st.Requeued != 0 {
				t.Fatalf("jobs queued behind a worker's exit cost an attempt: %+v", st)
			}
			starts := checkOnceEach(t, log, 500)
			perPid := map[string]int{}
			for _, rs := range starts {
				for _, r := range rs {
					perPid[r.pid]++
				}
			}
			for pid, n := range perPid {
				if n > 5 {
					t.Errorf("worker %s ran %d jobs, want at most 5", pid, n)
				}
			}
			if len(perPid) < 100 {
				t.Errorf("500 jobs ran in %d workers, want at least 100", len(perPid))
			}
		})
	}
}

// workingPid returns the pid of a worker `workers --json` lists as
// working, or 0 if none is.
func (s *supervisor) workingPid() int {
	s.t.Helper()
	var ws []struct {
		Pid   int    `json:"pid"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(s.mustCLI("workers", "--json")), &ws); err != nil {
		s.t.Fatal(err)
	}
	for _, w := range ws {
		if w.State == "working" {
			return w.Pid
		}
	}
	return 0
}

// TestPipeliningKill9LosesNothing kills workers with SIGKILL while they
// run batches: the job each was running is retried (one attempt), the
// jobs written behind it run elsewhere at no cost, and every job ends
// acked.
func TestPipeliningKill9LosesNothing(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, pipeliningConfig(t, behaveWorker, log, 2, "", 3))

	s.pushAll(
		[]string{"--job", "slow", "--payload", "2", "--count", "600"},
		[]string{"--job", "hang-once", "--payload", "x"},
		[]string{"--job", "slow", "--payload", "2", "--count", "600"},
	)
	// Three kills of whichever worker is busy, during the first 600.
	kills := 0
	for i := 1; i <= 3; i++ {
		s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= uint64(120*i) })
		deadline := time.Now().Add(10 * time.Second)
		pid := s.workingPid()
		for ; pid == 0 && time.Now().Before(deadline); pid = s.workingPid() {
			time.Sleep(5 * time.Millisecond)
		}
		if pid == 0 {
			t.Fatal("no worker working")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		kills++
	}
	// Then the worker stuck in hang-once, which has a batch behind it.
	var hungPid, hungID string
	for deadline := time.Now().Add(60 * time.Second); hungPid == ""; {
		for id, rs := range startsByID(t, log) {
			if rs[0].name == "hang-once" && rs[0].attempt == 1 {
				hungPid, hungID = rs[0].pid, id
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("hang-once never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, _ := strconv.Atoi(hungPid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	kills++

	st := s.settled(1201, 120*time.Second)
	if st.Dead != 0 || st.Requeued != 0 || st.Retried < 1 || st.Retried > uint64(kills) {
		t.Fatalf("after %d kills want 1201 acked, 1 to %d retried, 0 dead; got %+v", kills, kills, st)
	}
	starts := startsByID(t, log)
	if len(starts) != 1201 {
		t.Errorf("workers started %d distinct jobs, want 1201", len(starts))
	}
	again := 0
	for id, rs := range starts {
		for i := 1; i < len(rs); i++ {
			if rs[i].attempt <= rs[i-1].attempt {
				t.Errorf("job %s ran twice on the same attempt (a job a worker did not start spent one, or a started one none): %+v", id, rs)
			}
		}
		if rs[len(rs)-1].attempt > 1 {
			again++
		}
	}
	if again > int(st.Retried) {
		t.Errorf("%d jobs ran on a later attempt, but only %d were retried", again, st.Retried)
	}
	if rs := starts[hungID]; len(rs) != 2 || rs[1].attempt != 2 || rs[0].pid == rs[1].pid {
		t.Errorf("hang-once ran %+v; want attempt 1, then attempt 2 on another worker", rs)
	}
}

// TestPipeliningNackWithRedelivery: jobs nacked with redelivery on their
// first attempt, in batches, come back with x-attempt 2 and are acked.
func TestPipeliningNackWithRedelivery(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, pipeliningConfig(t, behaveWorker, log, 2, "", 3))

	s.pushAll([]string{"--job", "nack-once", "--payload", "x", "--count", "300"})
	st := s.settled(300, 60*time.Second)
	if st.Retried != 300 || st.Dead != 0 || st.Requeued != 0 {
		t.Fatalf("want 300 retried once then acked; got %+v", st)
	}
	starts := startsByID(t, log)
	if len(starts) != 300 {
		t.Errorf("workers started %d distinct jobs, want 300", len(starts))
	}
	for id, rs := range starts {
		if len(rs) != 2 || rs[0].attempt != 1 || rs[1].attempt != 2 {
			t.Errorf("job %s ran %+v; want attempt 1 then attempt 2", id, rs)
		}
	}
}

// TestPipeliningExecTTLCountsPerJob: one worker gets a batch of 8 jobs of
// 300ms each with exec_ttl 1s. Together they run far past 1s and are all
// acked on attempt 1 (each job's exec_ttl counts from the reply before
// it); the job that hangs in the middle of the batch is cut off and
// retried, and the jobs behind it run on the next worker at no cost.
func TestPipeliningExecTTLCountsPerJob(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, pipeliningConfig(t, behaveWorker, log, 1, "    supervisor:\n      exec_ttl: 1s\n", 3))

	slow := []string{"--job", "slow", "--payload", "300", "--count", "4"}
	s.pushAll(slow, []string{"--job", "hang-once", "--payload", "x"}, slow)
	st := s.settled(9, 60*time.Second)
	if st.Retried != 1 || st.Dead != 0 || st.Requeued != 0 {
		t.Fatalf("want 9 acked, 1 retried (the hung job), 0 dead; got %+v", st)
	}
	for id, rs := range startsByID(t, log) {
		switch rs[0].name {
		case "slow":
			if len(rs) != 1 || rs[0].attempt != 1 {
				t.Errorf("slow job %s ran %+v; want once, on attempt 1", id, rs)
			}
		case "hang-once":
			if len(rs) != 2 || rs[1].attempt != 2 || rs[0].pid == rs[1].pid {
				t.Errorf("hang-once ran %+v; want attempt 1, then attempt 2 in another worker", rs)
			}
		}
	}
}

// TestPipeliningKeyedJobsKeepTheirOrder: jobs of one key run in the order
// they were pushed when several are written to a worker at once.
func TestPipeliningKeyedJobsKeepTheirOrder(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, pipeliningConfig(t, behaveWorker, log, 2, "", 3))

	s.mustCLI("jobs", "pause", "default")
	runPHP(t, "tests/testdata/producer.php", s.rpcAddr(), "batch", "1000", "10")
	s.mustCLI("jobs", "resume", "default")
	st := s.settled(1000, 60*time.Second)
	if st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("%+v", st)
	}
	last := map[string]int{}
	n := 0
	for _, l := range readLines(t, log) {
		f := strings.Fields(l) // rec <x-key> <x-seq>
		if f[0] != "rec" {
			continue
		}
		seq, err := strconv.Atoi(f[len(f)-1])
		if len(f) != 3 || err != nil {
			t.Fatalf("bad rec line %q", l)
		}
		if seq != last[f[1]]+1 {
			t.Fatalf("key %s: job %d ran after job %d (keyed jobs out of order)", f[1], seq, last[f[1]])
		}
		last[f[1]] = seq
		n++
	}
	if n != 1000 || len(last) != 10 {
		t.Fatalf("%d jobs over %d keys, want 1000 over 10", n, len(last))
	}
}

// TestPipeliningSIGTERMUnderLoad: SIGTERM while each worker has a batch of
// 300ms jobs written ahead in its stdin. The supervisor stops taking jobs,
// lets the ones it gave out finish (none is cut off: each started job has
// its done line), stops the workers and exits 0, well within the 20s
// shutdown_timeout.
func TestPipeliningSIGTERMUnderLoad(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, pipeliningConfig(t, behaveWorker, log, 2, "", 3))

	s.pushAll([]string{"--job", "slow", "--payload", "300", "--count", "60"})
	before := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked >= 2 })
	if before.Active == 0 || before.Ready == 0 {
		t.Fatalf("before the signal want jobs running and waiting; got %+v", before)
	}
	doneBefore := len(dones(t, log))
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := s.wait(30 * time.Second)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if took > 15*time.Second {
		t.Errorf("exit took %s after SIGTERM; the jobs given out need about 2.4s", took)
	}
	started, finished := runs(t, log)
	for id := range started {
		if finished[id] == 0 {
			t.Errorf("job %s started but was not finished before exit", id)
		}
	}
	// At the signal at most 8 jobs per worker were given out (a third
	// batch of slack for one that began between the count and the signal).
	if n := len(started); n >= 60 || n > doneBefore+3*8 {
		t.Errorf("%d jobs ran, %d had finished at SIGTERM: it did not stop taking new jobs", n, doneBefore)
	}
	// No worker is left behind.
	for _, rs := range startsByID(t, log) {
		pid, _ := strconv.Atoi(rs[0].pid)
		if syscall.Kill(pid, 0) == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z") {
				t.Errorf("worker %d still running after the supervisor exited", pid)
			}
		}
	}
}

// With pipelining, a pipeline has two slots per worker by default: while
// one slot settles the batch its worker answered, the other has the next
// batch at the worker already. With one worker and pipelining 8, sixteen
// jobs are taken at once: eight running, eight waiting for the worker.
func TestPipeliningTwoSlotsPerWorker(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, pipeliningConfig(t, behaveWorker, log, 1, "", 3))
	s.pushAll([]string{"--job", "slow", "--payload", "200", "--count", "20"})
	s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return st.Active == 16 })
	if st := s.settled(20, 60*time.Second); st.Acked != 20 {
		t.Fatalf("want 20 acked; got %+v", st)
	}
}
