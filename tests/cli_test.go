package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestVersionFlag(t *testing.T) {
	out, code := runCLI(t, "--version")
	if code != 0 || !strings.Contains(out, "supervisor version ") {
		t.Fatalf("--version: exit %d %q", code, out)
	}
}

func TestClientSaysWhenNothingListens(t *testing.T) {
	out, code := runCLI(t, "jobs", "stat", "--rpc", "tcp://"+freeAddr(t))
	if code == 0 || !strings.Contains(out, "no supervisor is listening") {
		t.Fatalf("jobs stat with nothing listening: exit %d %q", code, out)
	}
}

func TestPushFlagsHeadersDelayPayloadFile(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))

	payload := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(payload, []byte("from a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, code := s.cli("push", "--pipeline", "default", "--job", "record", "--payload-file", payload,
		"--header", "x-key=alpha", "--header", "x-seq=1", "--delay", "1s", "--priority", "3", "--key", "alpha")
	if code != 0 || len(strings.TrimSpace(out)) != 36 {
		t.Fatalf("push: exit %d, want the job id printed: %q", code, out)
	}
	if st := s.stat("default"); st.Delayed != 1 {
		t.Fatalf("a job pushed with --delay 1s is not delayed: %+v", st)
	}
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if took := time.Since(start); took < time.Second {
		t.Fatalf("delayed job ran after %s", took)
	}
	var rec []string
	for _, l := range readLines(t, log) {
		if strings.HasPrefix(l, "rec ") {
			rec = append(rec, l)
		}
	}
	if len(rec) != 1 || rec[0] != "rec alpha 1" {
		t.Fatalf("worker saw headers %q, want [rec alpha 1]", rec)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log)) // shutdown_timeout: 20s

	s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "15000")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Active == 1 })
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := s.wait(5 * time.Second)
	if code == 0 {
		t.Fatalf("a second signal must exit non-zero (the running job was abandoned), got 0")
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("second signal: exit took %s", took)
	}
}
