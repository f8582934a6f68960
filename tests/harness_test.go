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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
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

// behaveWorker is the worker command of most tests: it runs each job as
// its name says and logs what it saw to $E2E_LOG.
const behaveWorker = "php tests/testdata/workers/behave.php"

// e2eConfig writes a .rr.yaml around pipeline "default" and returns its
// path: rpc on a free loopback port; server.command with E2E_LOG=log in
// its env; sections, top-level YAML placed before jobs (broker
// connections, status, metrics; "" for none; each line ending in a
// newline); and jobs with shutdown_timeout 20s, a pool of workers
// processes, consume ["default"] and pipeline as the body of
// jobs.pipelines.default (its keys indented by 6 spaces).
func e2eConfig(t *testing.T, command, log string, workers int, sections, pipeline string) string {
	t.Helper()
	return e2eConfigPool(t, command, log, fmt.Sprintf("    num_workers: %d\n", workers), sections, pipeline)
}

// e2eConfigPool is e2eConfig with pool as the keys of jobs.pool besides
// allocate_timeout and destroy_timeout (indented by 4 spaces, each line
// ending in a newline).
func e2eConfigPool(t *testing.T, command, log, pool, sections, pipeline string) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf(`version: "3"
rpc:
  listen: tcp://%s
server:
  command: %q
  env:
    E2E_LOG: %q
%sjobs:
  shutdown_timeout: 20s
  pool:
%s    allocate_timeout: 10s
    destroy_timeout: 5s
  consume: ["default"]
  pipelines:
    default:
%s`, freeAddr(t), command, log, sections, pool, pipeline))
}

// startConsuming runs the supervisor on cfg and waits until pipeline
// "default" is listed by `jobs stat` and consuming. startSupervisor returns
// once the RPC answers, but the supervisor serves RPC before its pipelines
// exist (a broker pipeline is made once its driver connected): a push in
// that window fails with "unknown pipeline".
func startConsuming(t *testing.T, cfg string) *supervisor {
	t.Helper()
	s := startSupervisor(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := s.cli("jobs", "stat", "--json")
		var stats []pipelineStat
		if code == 0 && json.Unmarshal([]byte(out), &stats) == nil {
			for _, st := range stats {
				if st.Pipeline == "default" && st.Consuming {
					return s
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline default not consuming 30s after the RPC answered: exit %d %s", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustCLI runs a client subcommand like cli and fails the test unless it
// exits 0; it returns the output.
func (s *supervisor) mustCLI(args ...string) string {
	s.t.Helper()
	out, code := s.cli(args...)
	if code != 0 {
		s.t.Fatalf("%s exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// terminate sends SIGTERM and returns the exit code (the test fails when
// the supervisor has not exited within 30s).
func (s *supervisor) terminate() int {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	return s.wait(30 * time.Second)
}

// rpcPush pushes jobs through the supervisor's RPC in order, one Push each
// (batch 1) or with PushBatch of batch jobs.
func (s *supervisor) rpcPush(jobs []consumer.Job, batch int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := rpc.Dial(ctx, s.rpcAddr())
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	for len(jobs) > 0 {
		n := min(batch, len(jobs))
		if batch == 1 {
			err = cl.Push(ctx, jobs[0])
		} else {
			err = cl.PushBatch(ctx, jobs[:n])
		}
		if err != nil {
			s.t.Fatalf("push: %v", err)
		}
		jobs = jobs[n:]
	}
}

// runs counts the start and done lines per job id of a worker log.
func runs(t *testing.T, log string) (starts, dones map[string]int) {
	t.Helper()
	starts, dones = map[string]int{}, map[string]int{}
	for _, l := range readLines(t, log) {
		switch f := strings.Fields(l); f[0] {
		case "start":
			starts[f[1]]++
		case "done":
			dones[f[1]]++
		}
	}
	return starts, dones
}

// dones counts the done lines per job id of a worker log.
func dones(t *testing.T, log string) map[string]int {
	t.Helper()
	_, d := runs(t, log)
	return d
}

// loggedJob is one line "<tag> <id> <attempt> <unix-ms> ..." of a worker
// log: a job the worker ran, written before it replied.
type loggedJob struct {
	id      string
	attempt int
	at      time.Time
	fields  []string // the whole line, split on blanks
}

// loggedJobs returns the lines of log tagged tag, in order; a tagged line
// that has not n (at least 4) fields, or whose attempt or time is not a number, fails
// the test.
func loggedJobs(t *testing.T, log, tag string, n int) []loggedJob {
	t.Helper()
	var out []loggedJob
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		if f[0] != tag {
			continue
		}
		if len(f) != n {
			t.Fatalf("bad %s line %q: %d fields, want %d", tag, l, len(f), n)
		}
		attempt, err1 := strconv.Atoi(f[2])
		ms, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad %s line %q", tag, l)
		}
		out = append(out, loggedJob{id: f[1], attempt: attempt, at: time.UnixMilli(ms), fields: f})
	}
	return out
}
