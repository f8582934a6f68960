package tests

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const pythonWorker = "python3 python-client/tests/workers/behave.py"

// pushPython pushes with the Python producer (python-client/tests/workers/push.py).
func pushPython(t *testing.T, s *supervisor, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", append([]string{"python-client/tests/workers/push.py", "--rpc", s.rpcAddr()}, args...)...)
	cmd.Dir = testEnv.repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("push.py %v: %v\n%s", args, err, out)
	}
}

func TestPythonWorkersAck1000JobsFromThePythonProducer(t *testing.T) {
	requireTool(t, "python3")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfigWith(t, pythonWorker, 2, log))

	pushPython(t, s, "--pipeline", "default", "--job", "ack", "--payload", "hello", "--count", "1000", "--batch", "100")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= 1000 })
	if st.Acked != 1000 || st.Dead != 0 || st.Retried != 0 {
		t.Fatalf("want exactly 1000 acked; got %+v", st)
	}
	// The worker print()s on every job and keeps working: all 1000 ran on
	// the 2 original workers.
	pids := map[string]bool{}
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			pids[f[3]] = true
		}
	}
	if len(pids) != 2 {
		t.Fatalf("jobs ran on %d worker processes, want the 2 original ones (a print() broke a worker?)", len(pids))
	}
}

func TestPythonNackWithRedeliveryAndRequeueWithDelay(t *testing.T) {
	requireTool(t, "python3")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfigWith(t, pythonWorker, 1, log))

	pushPython(t, s, "--pipeline", "default", "--job", "nack-once", "--payload", "x")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 && st.Retried == 1 })
	start := time.Now()
	pushPython(t, s, "--pipeline", "default", "--job", "requeue-once", "--payload", "x")
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 2 })
	if st.Requeued != 1 || st.Dead != 0 {
		t.Fatalf("%+v", st)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("requeue with delay 1s came back after %s", took)
	}
	var replies []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "done" {
			replies = append(replies, f[2]+":"+f[3])
		}
	}
	if got := strings.Join(replies, ","); got != "1:nack,2:ack,1:requeue,2:ack:requeued" {
		t.Fatalf("worker replies %s", got)
	}
}

func TestValidateAcceptsThePythonExampleConfig(t *testing.T) {
	out, code := runCLI(t, "validate", "-c", "examples/python.rr.yaml")
	if code != 0 {
		t.Fatalf("validate examples/python.rr.yaml: exit %d\n%s", code, out)
	}
}

func TestValidateAcceptsTheBrokersExampleConfig(t *testing.T) {
	out, code := runCLI(t, "validate", "-c", "examples/brokers.rr.yaml")
	if code != 0 {
		t.Fatalf("validate examples/brokers.rr.yaml: exit %d\n%s", code, out)
	}
}
