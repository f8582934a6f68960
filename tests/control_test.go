package tests

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
)

// rpcAddr is rpc.listen of the supervisor's config.
func (s *supervisor) rpcAddr() string {
	s.t.Helper()
	root, err := config.Load(s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	return root.RPC.Listen
}

// php runs a PHP script from the repo root and returns its output.
func runPHP(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "php", args...)
	cmd.Dir = testEnv.repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("php %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestPHPProducerKeysAndHeadersArriveInOrder(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	runPHP(t, "tests/testdata/producer.php", s.rpcAddr(), "batch", "1000", "10")
	s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 1000 })

	last := map[string]int{}
	n := 0
	for _, l := range readLines(t, log) {
		f := strings.Fields(l) // rec <x-key> <x-seq>
		if f[0] != "rec" {
			continue
		}
		if len(f) != 3 {
			t.Fatalf("worker did not see the producer's headers: %q", l)
		}
		seq, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("x-seq header %q: %v", f[2], err)
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

func TestPHPProducerServerErrorIsAnException(t *testing.T) {
	requireTool(t, "php")
	s := startSupervisor(t, memoryConfig(t, 1, filepath.Join(t.TempDir(), "jobs.log")))
	out := runPHP(t, "tests/testdata/producer.php", s.rpcAddr(), "error")
	if !strings.Contains(out, "RPCException") || !strings.Contains(out, "no-such-pipeline") {
		t.Fatalf("want an RPCException naming the pipeline, got %q", out)
	}
}

func TestPauseStopsConsumingAndResumeDrains(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	s.mustCLI("jobs", "pause", "default")
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x", "--count", "50")
	time.Sleep(500 * time.Millisecond)
	st := s.stat("default")
	if st.Ready != 50 || st.Active != 0 || st.Acked != 0 || st.Consuming {
		t.Fatalf("while paused want 50 ready, none active or acked, not consuming; got %+v", st)
	}
	s.mustCLI("jobs", "resume", "default")
	st = s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 50 })
	if st.Ready != 0 || !st.Consuming {
		t.Fatalf("after resume: %+v", st)
	}
}

func TestDeclarePipelineAtRuntime(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	out := runPHP(t, "tests/testdata/producer.php", s.rpcAddr(), "declare", "extra")
	if !strings.Contains(out, "extra") {
		t.Fatalf("list after declare: %q", out)
	}
	s.waitStat("extra", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 10 })

	// The CLI sees it too, and destroy removes it.
	out, code := s.cli("jobs", "list", "--json")
	var names []string
	if code != 0 || json.Unmarshal([]byte(out), &names) != nil {
		t.Fatalf("jobs list: exit %d %s", code, out)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "default,extra" {
		t.Fatalf("jobs list = %v", names)
	}
	if out, code := s.cli("jobs", "destroy", "extra"); code != 0 || !strings.Contains(out, "extra") {
		t.Fatalf("destroy: exit %d %s", code, out)
	}
	out, _ = s.cli("jobs", "list")
	if strings.Contains(out, "extra") {
		t.Fatalf("extra still listed after destroy: %s", out)
	}
}

func TestDestroyLetsRunningJobsFinish(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "400", "--count", "10")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Active == 2 })
	s.mustCLI("jobs", "destroy", "default")
	// The worker logs "done" just after its reply, which may be after
	// destroy returned: give it a moment.
	started, finished := runs(t, log)
	for deadline := time.Now().Add(3 * time.Second); len(finished) < len(started) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		started, finished = runs(t, log)
	}
	if len(started) == 0 || len(started) == 10 {
		t.Fatalf("%d jobs started; want the running ones only", len(started))
	}
	for id := range started {
		if finished[id] == 0 {
			t.Errorf("job %s was running at destroy and did not finish", id)
		}
	}
}

func TestResetUnderLoadLosesNoJobAndReplacesEveryWorker(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	before := s.workerPids()
	s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "5", "--count", "300")
	s.mustCLI("reset")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 300 })
	if st.Dead != 0 || st.Retried != 0 {
		t.Fatalf("reset under load cost jobs: %+v", st)
	}
	after := s.workerPids()
	if len(after) != 2 {
		t.Fatalf("%d workers after reset, want 2", len(after))
	}
	for _, p := range after {
		for _, q := range before {
			if p == q {
				t.Fatalf("worker %d survived the reset (before %v, after %v)", p, before, after)
			}
		}
	}
}

func (s *supervisor) workerPids() []int {
	s.t.Helper()
	out, code := s.cli("workers", "--json")
	if code != 0 {
		s.t.Fatalf("workers: exit %d %s", code, out)
	}
	var ws []struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		s.t.Fatalf("workers --json: %v in %q", err, out)
	}
	pids := make([]int, len(ws))
	for i, w := range ws {
		pids[i] = w.Pid
	}
	return pids
}

func TestSIGHUPReplacesEveryWorker(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 2, log))

	before := s.workerPids()
	s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "5", "--count", "200")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 200 })
	if st.Dead != 0 || st.Retried != 0 {
		t.Fatalf("SIGHUP under load cost jobs: %+v", st)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		after := s.workerPids()
		replaced := len(after) == 2
		for _, p := range after {
			for _, q := range before {
				replaced = replaced && p != q
			}
		}
		if replaced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers after SIGHUP %v, before %v: not all replaced", after, before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-s.done:
		t.Fatalf("SIGHUP stopped the supervisor")
	default:
	}
}
