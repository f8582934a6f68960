package tests

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// limitsWorker is the path of the fakeworker binary, built once.
var limitsWorker = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pipevisor-limits-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "fakeworker")
	build := exec.Command("go", "build", "-o", bin, "./internal/fakeworker/cmd/fakeworker")
	build.Dir = testEnv.repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building fakeworker: %v\n%s", err, out)
	}
	return bin, nil
})

// fakeWorkerCmd is the command of a Go fake worker acking every job (fast
// enough to drain 200k jobs in seconds).
func fakeWorkerCmd(t *testing.T) string {
	t.Helper()
	bin, err := limitsWorker()
	if err != nil {
		t.Fatal(err)
	}
	return bin + " ack"
}

// limitsConfig is a memory pipeline "default" served by workers fake
// workers, with rpcKeys added to the rpc: section (each line indented by
// two spaces and ending in a newline).
func limitsConfig(t *testing.T, workers int, rpcKeys string) string {
	t.Helper()
	cfg := e2eConfig(t, fakeWorkerCmd(t), filepath.Join(t.TempDir(), "jobs.log"), workers, "", "      driver: memory\n      config:\n        priority: 10\n")
	if rpcKeys == "" {
		return cfg
	}
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfterN(string(b), "\n", 4) // version, rpc:, listen, rest
	yaml := lines[0] + lines[1] + lines[2] + rpcKeys + lines[3]
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// vmRSS is the supervisor's resident memory in bytes, from
// /proc/PID/status.
func (s *supervisor) vmRSS() int64 {
	s.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				s.t.Fatalf("VmRSS line %q: %v", sc.Text(), err)
			}
			return kb << 10
		}
	}
	s.t.Fatalf("no VmRSS in /proc/%d/status", s.cmd.Process.Pid)
	return 0
}

// TestNumWorkersOverTheMaximumFailsValidate: `supervisor validate` and
// `serve` refuse jobs.pool.num_workers above 500, naming the key and the
// maximum, and start no worker.
func TestNumWorkersOverTheMaximumFailsValidate(t *testing.T) {
	cfg := limitsConfig(t, 100000, "")
	for _, cmd := range []string{"validate", "serve"} {
		out, code := runCLI(t, cmd, "-c", cfg)
		if code == 0 {
			t.Fatalf("%s exit 0 with num_workers: 100000:\n%s", cmd, out)
		}
		if !strings.Contains(out, "jobs.pool.num_workers: must be from 0 to 500") || !strings.Contains(out, "got 100000") {
			t.Fatalf("%s output does not name the key and the maximum:\n%s", cmd, out)
		}
	}
}

// TestPushOverTheFrameLimitSaysTheLimit: `supervisor push` of a 64 MiB
// payload fails with exit 1 and says the push is over the RPC frame limit
// and what the limit is (it used to print "connection reset by peer");
// the supervisor goes on serving.
func TestPushOverTheFrameLimitSaysTheLimit(t *testing.T) {
	s := startSupervisor(t, limitsConfig(t, 1, ""))
	payload := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(payload, make([]byte, 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := s.cli("push", "--pipeline", "default", "--job", "big", "--payload-file", payload)
	if code != 1 {
		t.Fatalf("push of 64 MiB: exit %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "push of 64.0 MiB exceeds the RPC frame limit of 64 MiB") || strings.Contains(out, "reset by peer") {
		t.Fatalf("push of 64 MiB says:\n%s\nwant the frame limit named", out)
	}
	t.Logf("%s", out)
	s.mustCLI("push", "--pipeline", "default", "--job", "small", "--payload", "x")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
}

// largeHeader is a JSON request frame header (seq, jobs.Push) announcing
// size payload bytes.
func largeHeader(seq uint32, size int) []byte {
	f := gf.NewFrame()
	f.WriteVersion(f.Header(), gf.Version1)
	f.WriteFlags(f.Header(), gf.CodecJSON)
	f.WriteOptions(f.HeaderPtr(), seq, uint32(len("jobs.Push")))
	f.WritePayloadLen(f.Header(), uint32(size))
	f.WriteCRC(f.Header())
	return f.Bytes()[:f.ReadHL(f.Header())*gf.WORD]
}

// TestManyLargeFramesStayWithinTheBudget: 30 connections each announce a
// 60 MiB request and send 16 MiB of it. Only what the default
// rpc.max_inflight_bytes (128 MiB: two such frames) allows is read, so the
// supervisor's RSS grows by far less than the 480 MiB sent (it grew by
// that much without the budget); connections past rpc.max_connections
// (20 here) are not served meanwhile, and the supervisor answers again
// once they are gone.
func TestManyLargeFramesStayWithinTheBudget(t *testing.T) {
	s := startSupervisor(t, limitsConfig(t, 1, "  max_connections: 20\n"))
	idle := s.vmRSS()
	addr := strings.TrimPrefix(s.rpcAddr(), "tcp://")

	const conns, announced, sent = 30, 60 << 20, 16 << 20
	chunk := make([]byte, 1<<20)
	var wg sync.WaitGroup
	opened := make([]net.Conn, 0, conns)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, c)
		wg.Go(func() {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(largeHeader(uint32(i+1), announced)); err != nil {
				return
			}
			for range sent / len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return // the supervisor stopped reading: the budget holds it back
				}
			}
		})
	}
	// The writes end when their data is in, or when the socket buffers
	// are full and the deadline passes.
	var peak int64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(50 * time.Millisecond):
		}
		peak = max(peak, s.vmRSS())
	}
	if bound := idle + 100<<20; peak > bound {
		t.Fatalf("RSS went from %d MiB to %d MiB with 30 connections sending 16 MiB of 60 MiB frames, want below %d MiB", idle>>20, peak>>20, bound>>20)
	}
	t.Logf("RSS idle %d MiB, peak %d MiB", idle>>20, peak>>20)

	// The 21st connection and later are not served while 20 are open.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	cl, err := rpc.Dial(ctx, s.rpcAddr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.List(ctx); err == nil {
		t.Fatal("a 31st connection was served while 30 were open (max_connections 20)")
	}
	_ = cl.Close()
	for _, c := range opened {
		_ = c.Close()
	}
	s.mustCLI("push", "--pipeline", "default", "--job", "small", "--payload", "x")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
}

// TestMemoryReturnedAfterALargeDrain: one PushBatch of 200k jobs into a
// paused memory pipeline, then resume: once every job is acked the
// supervisor's RSS falls back near where it was idle (it stayed at the
// peak before).
func TestMemoryReturnedAfterALargeDrain(t *testing.T) {
	s := startSupervisor(t, limitsConfig(t, 2, ""))
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Consuming })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := rpc.Dial(ctx, s.rpcAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Pause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	idle := s.vmRSS()

	const n = 200_000
	jobs := make([]consumer.Job, n)
	payload := []byte(strings.Repeat("p", 100))
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("job-%06d", i), Name: "bulk", Pipeline: "default", Payload: payload}
	}
	if err := cl.PushBatch(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	jobs = nil
	full := s.vmRSS()
	if err := cl.Resume(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	s.waitStat("default", 90*time.Second, func(st pipelineStat) bool { return st.Acked == n })

	bound := 2*idle + 30<<20
	deadline := time.Now().Add(15 * time.Second)
	rss := s.vmRSS()
	for rss > bound && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		rss = s.vmRSS()
	}
	t.Logf("RSS idle %d MiB, with 200k jobs queued %d MiB, after the drain %d MiB", idle>>20, full>>20, rss>>20)
	if rss > bound {
		t.Fatalf("RSS %d MiB 15s after 200k jobs drained (idle %d MiB, peak %d MiB), want below %d MiB", rss>>20, idle>>20, full>>20, bound>>20)
	}
}

// TestClientsPushOverTheFrameLimitSayTheLimit: the PHP and Python
// producers pushing a 64 MiB payload to the supervisor fail with the
// push's size and the frame limit in their error, not a connection reset.
func TestClientsPushOverTheFrameLimitSayTheLimit(t *testing.T) {
	requireTool(t, "php")
	requireTool(t, "python3")
	s := startSupervisor(t, limitsConfig(t, 1, ""))
	addr := s.rpcAddr()
	for _, c := range []struct {
		name string
		cmd  []string
	}{
		{"php", []string{"php", "-d", "memory_limit=1G", "-r", `require "php-client/autoload.php";
try { (new Pipevisor\Jobs($argv[1]))->push("default", "big", str_repeat("x", 64 << 20)); echo "pushed\n"; }
catch (Throwable $e) { echo get_class($e), ": ", $e->getMessage(), "\n"; exit(1); }`, addr}},
		{"python", []string{"python3", "-c", `import sys
sys.path.insert(0, "python-client/src")
from pipevisor import Jobs
try:
    Jobs(sys.argv[1]).push("default", "big", b"x" * (64 << 20))
    print("pushed")
except Exception as e:
    print(type(e).__name__ + ": " + str(e))
    sys.exit(1)`, addr}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, c.cmd[0], c.cmd[1:]...)
			cmd.Dir = testEnv.repoRoot
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the push of 64 MiB succeeded:\n%s", out)
			}
			if !strings.Contains(string(out), "push of 85.3 MiB exceeds the RPC frame limit of 64 MiB") {
				t.Fatalf("the push of 64 MiB says:\n%s\nwant its size and the frame limit", out)
			}
			t.Logf("%s", out)
		})
	}
	s.mustCLI("push", "--pipeline", "default", "--job", "small", "--payload", "x")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
}
