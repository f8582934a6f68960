package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A rolling reset onto worker code that does not boot fails at once with
// the new worker's own error, and keeps the old workers serving.
func TestResetOntoBrokenCodeKeepsTheOldWorkers(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken")
	cfg := writeConfig(t, `version: "3"
rpc:
  listen: tcp://`+freeAddr(t)+`
server:
  command: "php tests/testdata/workers/broken-after.php"
  env:
    E2E_BROKEN: "`+broken+`"
jobs:
  pool: {num_workers: 2, allocate_timeout: 10s, destroy_timeout: 5s, reset_timeout: 60s}
  consume: ["default"]
  pipelines:
    default: {driver: memory}
`)
	s := startSupervisor(t, cfg)
	// The workers start after the RPC answers: wait for both before the
	// code breaks.
	before := s.waitWorkers("2 workers", func(ws map[string][]int) bool { return len(ws["default"]) == 2 })["default"]
	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := s.cli("reset")
	if code != 1 || !strings.Contains(out, "PHP Parse error") || !strings.Contains(out, "did not start") {
		t.Fatalf("reset onto broken code: exit %d %q, want exit 1 quoting the parse error", code, out)
	}
	after := s.workerPids()
	slices.Sort(before)
	slices.Sort(after)
	if !slices.Equal(before, after) {
		t.Fatalf("workers %v after the failed reset, want the old ones %v", after, before)
	}
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x", "--count", "20")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 20 })
}

// /health answers 503 with the reason while the pool is below its size
// because replacements fail to start (a worker died after a deploy of
// broken code), and 200 again once they start.
func TestHealthReportsAPoolBelowItsSize(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken")
	statusAddr := freeAddr(t)
	cfg := writeConfig(t, `version: "3"
rpc:
  listen: tcp://`+freeAddr(t)+`
status:
  address: `+statusAddr+`
server:
  command: "php tests/testdata/workers/broken-after.php"
  env:
    E2E_BROKEN: "`+broken+`"
jobs:
  pool: {num_workers: 2, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: ["default"]
  pipelines:
    default: {driver: memory}
`)
	s := startSupervisor(t, cfg)
	waitHealth := func(wantCode int, wantBody string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := httpGet(t, "http://"+statusAddr+"/health")
			if code == wantCode && strings.Contains(body, wantBody) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/health: %d %q, want %d with %q", code, body, wantCode, wantBody)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitHealth(200, "ok")
	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pids := s.workerPids()
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitHealth(503, "1 of 2 workers")
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	waitHealth(200, "ok")
	if n := len(s.workerPids()); n != 2 {
		t.Fatalf("%d workers after the fix, want 2", n)
	}
}
