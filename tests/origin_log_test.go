package tests

import (
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestResetLoggedWithItsOrigin: a reset asked over RPC (the CLI) and one
// asked by SIGHUP are logged at info with their origin.
func TestResetLoggedWithItsOrigin(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))
	s.mustCLI("reset")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rpcDone := regexp.MustCompile(`level=INFO msg="workers reset: done" origin=rpc remote=127\.0\.0\.1:\d+`)
	sigDone := regexp.MustCompile(`level=INFO msg="workers reset: done" origin=signal`)
	deadline := time.Now().Add(30 * time.Second)
	for !(rpcDone.MatchString(s.output()) && sigDone.MatchString(s.output())) {
		if time.Now().After(deadline) {
			t.Fatalf("want both resets logged with their origin:\n%s", s.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s.output(), `msg="pipelines declared" consumed=[default] paused=[] origin=startup`) {
		t.Errorf("start not logged with origin startup:\n%s", s.output())
	}
}
