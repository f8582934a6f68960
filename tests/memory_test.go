package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memoryConfig is a .rr.yaml running the behave.php worker on one memory
// pipeline "default"; log is the worker's E2E_LOG file.
func memoryConfig(t *testing.T, workers int, log string) string {
	t.Helper()
	return memoryConfigWith(t, behaveWorker, workers, log)
}

// memoryConfigWith is memoryConfig with another worker command.
func memoryConfigWith(t *testing.T, command string, workers int, log string) string {
	t.Helper()
	return e2eConfig(t, command, log, workers, "", `      driver: memory
      config:
        priority: 10
      retry:
        max_attempts: 3
        backoff: {initial: 100ms, max: 1s, multiplier: 2, jitter: 0}
`)
}

func TestMemoryPush1000AllAcked(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "hello", "--count", "1000")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= 1000 })
	if st.Acked != 1000 || st.Dead != 0 || st.Retried != 0 {
		t.Fatalf("want 1000 acked, 0 dead, 0 retried; got %+v", st)
	}
	if n := len(dones(t, log)); n != 1000 {
		t.Fatalf("worker finished %d distinct jobs, want 1000", n)
	}
}

func TestMemoryNackWithRedeliverySeesAttempt2(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "nack-once", "--payload", "x")
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if st.Retried != 1 || st.Dead != 0 {
		t.Fatalf("want 1 retried then acked; got %+v", st)
	}
	var attempts []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			attempts = append(attempts, f[2])
		}
	}
	if strings.Join(attempts, ",") != "1,2" {
		t.Fatalf("worker saw attempts %v, want [1 2]", attempts)
	}
}

func TestMemoryRequeueWithDelayAndHeaders(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "requeue-once", "--payload", "x")
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if st.Requeued != 1 {
		t.Fatalf("want 1 requeued; got %+v", st)
	}
	var done []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "done" {
			done = append(done, f[2]+":"+f[3])
		}
	}
	if strings.Join(done, ",") != "1:requeue,2:ack:requeued" {
		t.Fatalf("worker replies %v, want the requeue then an ack that sees the new header", done)
	}
}

func TestMemoryAlwaysFailingJobEndsDead(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "always-fail", "--payload", "x")
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Dead == 1 })
	if st.Acked != 0 {
		t.Fatalf("a failing job was acked: %+v", st)
	}
	starts := 0
	for _, l := range readLines(t, log) {
		if strings.HasPrefix(l, "start ") {
			starts++
		}
	}
	if starts != 3 {
		t.Fatalf("job ran %d times, want max_attempts = 3", starts)
	}
	// It stays dead: no fourth run.
	time.Sleep(1500 * time.Millisecond)
	if st := s.stat("default"); st.Dead != 1 || st.Active != 0 {
		t.Fatalf("after dead: %+v", st)
	}
}

func TestMemoryKill9WorkerMidJobLosesNothing(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x", "--count", "20")
	s.mustCLI("push", "--pipeline", "default", "--job", "hang-once", "--payload", "x")
	// Find the worker stuck in the hang-once job and kill it.
	var pid int
	deadline := time.Now().Add(30 * time.Second)
	for pid == 0 {
		for _, l := range readLines(t, log) {
			f := strings.Fields(l)
			if f[0] == "start" && f[4] == "hang-once" && f[2] == "1" {
				pid, _ = strconv.Atoi(f[3])
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("hang-once job never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 21 })
	if st.Dead != 0 {
		t.Fatalf("%+v", st)
	}
	if n := len(dones(t, log)); n != 21 {
		t.Fatalf("%d distinct jobs done, want 21", n)
	}
	// The supervisor replaced the killed worker: it still has 2.
	deadline = time.Now().Add(15 * time.Second)
	for {
		out, code := s.cli("workers", "--json")
		if code == 0 && strings.Count(out, `"pid"`) == 2 && !strings.Contains(out, fmt.Sprintf(`"pid": %d,`, pid)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed worker was not replaced: exit %d %s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMemorySIGTERMFinishesRunningJobsAndExits0(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "300", "--count", "50")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked >= 2 })
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	started, finished := runs(t, log)
	for id := range started {
		if finished[id] == 0 {
			t.Errorf("job %s started but was not finished before exit", id)
		}
	}
	if len(started) == 50 {
		t.Errorf("all 50 jobs ran: SIGTERM did not stop taking new jobs")
	}
	// No worker is left behind.
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		if f[0] != "start" {
			continue
		}
		pid, _ := strconv.Atoi(f[3])
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z") {
				t.Errorf("worker %d still running after the supervisor exited", pid)
			}
		}
	}
}

func TestBrokenConfigRejectedByValidateAndServe(t *testing.T) {
	cfg := writeConfig(t, `version: "3"
rpc:
  listen: tcp://127.0.0.1:1
server:
  command: "php examples/worker.php"
jobs:
  pool:
    num_workers: two
    bogus_key: 1
  pipelines:
    default:
      driver: memory
      retry:
        max_attempts: -1
`)
	out, code := runCLI(t, "validate", "-c", cfg)
	if code != 1 {
		t.Fatalf("validate exit %d, want 1: %s", code, out)
	}
	for _, want := range []string{"jobs.pool.num_workers", "jobs.pool.bogus_key", "jobs.pipelines.default.retry.max_attempts"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	out, code = runCLI(t, "serve", "-c", cfg)
	if code == 0 || !strings.Contains(out, "jobs.pool.num_workers") {
		t.Fatalf("serve with a broken config: exit %d\n%s", code, out)
	}
}

func TestValidateAcceptsTheExampleConfig(t *testing.T) {
	out, code := runCLI(t, "validate", "-c", "examples/.rr.yaml")
	if code != 0 {
		t.Fatalf("validate examples/.rr.yaml: exit %d\n%s", code, out)
	}
}
