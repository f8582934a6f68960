// Package tests holds the end-to-end tests: they build the real supervisor
// binary, run it with real PHP (and Python) workers and real brokers, and
// assert on what a user sees: `jobs stat --json`, broker state, exit codes.
package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// env is what TestMain prepared for every test.
type env struct {
	bin      string // path of the built supervisor binary
	repoRoot string
}

var testEnv env // set once by TestMain before any test runs; read-only afterwards

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	dir, err := os.MkdirTemp("", "pipevisor-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "supervisor")
	build := exec.Command("go", "build", "-o", bin, "./cmd/supervisor")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the supervisor:", err)
		return 1
	}
	testEnv = env{bin: bin, repoRoot: root}
	return m.Run()
}

// requirePHP fails (in CI) or skips the test when php is not installed.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
}

// freeAddr returns a loopback TCP address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// supervisor is one running `supervisor serve`.
type supervisor struct {
	t      *testing.T
	cfg    string
	cmd    *exec.Cmd
	out    *bytes.Buffer // stdout+stderr
	done   chan struct{}
	exitCh chan int
}

// writeConfig writes yaml into a temp dir and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), ".rr.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSupervisor runs `supervisor serve -c cfg` from the repo root and waits
// until its RPC answers `jobs stat`.
func startSupervisor(t *testing.T, cfg string, extraEnv ...string) *supervisor {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(testEnv.bin, "serve", "-c", cfg)
	cmd.Dir = testEnv.repoRoot
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout = &syncWriter{w: &out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &supervisor{t: t, cfg: cfg, cmd: cmd, out: &out, done: make(chan struct{}), exitCh: make(chan int, 1)}
	go func() {
		defer close(s.done)
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		s.exitCh <- code
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-s.done
		}
		if t.Failed() {
			t.Logf("supervisor output:\n%s", s.output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, code := s.cli("jobs", "stat", "--json"); code == 0 {
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("supervisor exited during start:\n%s", s.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor did not answer within 30s:\n%s", s.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *supervisor) output() string {
	if w, ok := s.cmd.Stdout.(*syncWriter); ok {
		return w.String()
	}
	return ""
}

// cli runs a client subcommand against this supervisor's config.
func (s *supervisor) cli(args ...string) (string, int) {
	return runCLI(s.t, append(args, "-c", s.cfg)...)
}

// runCLI runs the supervisor binary with args and returns combined output and
// the exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testEnv.bin, args...)
	cmd.Dir = testEnv.repoRoot
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return string(out), code
}

// pipelineStat is one entry of `supervisor jobs stat --json`.
type pipelineStat struct {
	Pipeline  string `json:"pipeline"`
	Driver    string `json:"driver"`
	Ready     int64  `json:"ready"`
	Active    int64  `json:"active"`
	Delayed   int64  `json:"delayed"`
	Acked     uint64 `json:"acked"`
	Retried   uint64 `json:"retried"`
	Requeued  uint64 `json:"requeued"`
	Dead      uint64 `json:"dead"`
	Consuming bool   `json:"consuming"`
}

func (s *supervisor) stat(pipeline string) pipelineStat {
	s.t.Helper()
	out, code := s.cli("jobs", "stat", "--json")
	if code != 0 {
		s.t.Fatalf("jobs stat exit %d: %s", code, out)
	}
	var stats []pipelineStat
	if err := json.Unmarshal([]byte(out), &stats); err != nil {
		s.t.Fatalf("jobs stat --json: %v in %q", err, out)
	}
	for _, st := range stats {
		if st.Pipeline == pipeline {
			return st
		}
	}
	s.t.Fatalf("pipeline %q not in jobs stat: %s", pipeline, out)
	return pipelineStat{}
}

// waitStat polls jobs stat until cond holds or the timeout passes.
func (s *supervisor) waitStat(pipeline string, timeout time.Duration, cond func(pipelineStat) bool) pipelineStat {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := s.stat(pipeline)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting on pipeline %q; last stat %+v", pipeline, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its exit code.
func (s *supervisor) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case code := <-s.exitCh:
		return code
	case <-time.After(timeout):
		s.t.Fatalf("supervisor did not exit within %s", timeout)
		return -1
	}
}

// readLines returns the non-empty lines of a file (missing file = none).
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// jobIDs returns the ids of the jobs a test worker logged as started and as
// done (the "start <id> ..." and "done <id> ..." lines of its E2E_LOG).
func jobIDs(t *testing.T, log string) (started, finished map[string]bool) {
	t.Helper()
	started, finished = map[string]bool{}, map[string]bool{}
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		switch f[0] {
		case "start":
			started[f[1]] = true
		case "done":
			finished[f[1]] = true
		}
	}
	return started, finished
}
