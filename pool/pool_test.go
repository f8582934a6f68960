package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/internal/fakeworker"
)

func TestExecEchoRoundTrip(t *testing.T) {
	p := start(t, fakeConfig("echo", 2), nil)
	ws := p.Workers()
	if len(ws) != 2 || ws[0].State != "ready" || ws[0].Pid <= 0 || ws[0].RSS == 0 {
		t.Fatalf("Workers() = %+v", ws)
	}
	for i := range 10 {
		in := job(fmt.Sprint(i), strings.Repeat("x", i*1000))
		out := run(t, p, in)
		if string(out.Context) != string(in.Context) || string(out.Body) != string(in.Body) {
			t.Fatalf("echo %d: got %q / %d bytes", i, out.Context, len(out.Body))
		}
	}
	big := job("big", strings.Repeat("0123456789", 300_000)) // 3 MB, past the pipe buffer
	if out := run(t, p, big); len(out.Body) != len(big.Body) {
		t.Fatalf("big echo: %d bytes", len(out.Body))
	}
	var jobs uint64
	for _, w := range p.Workers() {
		jobs += w.Jobs
	}
	if jobs != 11 {
		t.Fatalf("workers report %d jobs, want 11", jobs)
	}
}

func TestWorkerEnvironment(t *testing.T) {
	cfg := fakeConfig("env", 1)
	cfg.Env["rr_rpc"] = "tcp://127.0.0.1:6001"
	cfg.Env["app_name"] = "demo"
	cfg.Env["RR_MODE"] = "http" // the pool's own values win
	p := start(t, cfg, nil)
	out := run(t, p, frame.Payload{Context: []byte("{}"), Body: []byte("RR_MODE,RR_RELAY,RR_RPC,APP_NAME")})
	var got map[string]string
	if err := json.Unmarshal(out.Body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"RR_MODE": "jobs", "RR_RELAY": "pipes", "RR_RPC": "tcp://127.0.0.1:6001", "APP_NAME": "demo"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestNewFailsWhenNoWorkerStarts(t *testing.T) {
	cases := []struct {
		name     string
		cfg      Config
		want     error
		contains []string
	}{
		{"exits on boot", fakeConfig("exit-on-boot", 2), nil, []string{"-test.run", "exiting on boot", "exit status 3"}},
		{"garbage on stdout", fakeConfig("garbage-boot", 1), frame.ErrNotFrame, []string{"I am a worker that prints to stdout"}},
		{"php wrong script", Config{Command: []string{"/bin/sh", "-c", `echo "Could not open input file: /app/wrker.php"`}, NumWorkers: 1},
			frame.ErrBadCommand, []string{"/app/wrker.php", "/bin/sh"}},
		{"no such binary", Config{Command: []string{"/nonexistent/php", "worker.php"}, NumWorkers: 1}, nil, []string{"/nonexistent/php worker.php"}},
		{"no handshake reply", func() Config {
			c := fakeConfig("mute", 1)
			c.AllocateTimeout = 200 * time.Millisecond
			return c
		}(), frame.ErrHandshake, []string{"allocate_timeout"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			start := time.Now()
			p, err := New(context.Background(), c.cfg, nil)
			if err == nil {
				_ = p.Stop(context.Background())
				t.Fatal("New succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			for _, s := range append(c.contains, "no worker started with command") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("New took %v: it should give up after one try per worker", d)
			}
		})
	}
}

// A command that passes the handshake and dies at once is restarted with
// backoff, not in a tight loop.
func TestRespawnBacksOff(t *testing.T) {
	cfg := fakeConfig("exit-after-boot", 1)
	cfg.DestroyTimeout = 30 * time.Second // Stop must not need it
	log := filepath.Join(t.TempDir(), "starts")
	cfg.Env["FAKEWORKER_LOG"] = log
	p := start(t, cfg, nil)
	time.Sleep(1500 * time.Millisecond)
	// backoff 100ms, 200ms, 400ms, 800ms: about 5 starts in 1.5 s; a
	// respawn loop without backoff makes dozens.
	if n := lines(t, log); n < 1 || n > 10 {
		t.Fatalf("%d starts in 1.5 s, want a handful", n)
	}
	t0 := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Stop took %v", d)
	}
}

func TestErrorFrameKeepsWorker(t *testing.T) {
	p := start(t, fakeConfig("error-frame", 1), nil)
	before := pids(p)
	_, err := p.Exec(context.Background(), job("1", "x"))
	var je *JobError
	if !errors.As(err, &je) || !strings.Contains(je.Message, "job failed on purpose") {
		t.Fatalf("err = %v, want *JobError", err)
	}
	if _, err := p.Exec(context.Background(), job("2", "x")); !errors.As(err, &je) {
		t.Fatalf("second exec: %v", err)
	}
	if after := pids(p); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("workers changed after an ERROR frame: %v -> %v", before, after)
	}
}

func TestBrokenWorkerIsReplaced(t *testing.T) {
	cases := []struct {
		mode     string
		cause    error
		contains string
	}{
		{"crash", nil, "Allowed memory size exhausted"},
		{"garbage", frame.ErrNotFrame, "debug: handling job 1"},
		{"bad-crc", frame.ErrNotFrame, "workers must log to stderr"},
		{"bad-options", frame.ErrBadOptions, "got 2 options"},
		{"truncated", frame.ErrTruncated, "stdout ended after"},
		// The worker dies but a child it started keeps its stdout open:
		// the pool notices the exit instead of waiting forever.
		{"orphan-crash", nil, "leaving a child on my stdout"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			p := start(t, fakeConfig(c.mode, 1), nil)
			before := pids(p)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := p.Exec(ctx, job("1", "x"))
			var we *WorkerError
			if !errors.As(err, &we) || !errors.Is(err, ErrWorkerCrashed) {
				t.Fatalf("err = %v, want *WorkerError", err)
			}
			if !before[we.Pid] {
				t.Fatalf("WorkerError.Pid %d is not the worker %v", we.Pid, before)
			}
			if c.cause != nil && !errors.Is(err, c.cause) {
				t.Fatalf("err = %v, want it to wrap %v", err, c.cause)
			}
			if !strings.Contains(err.Error(), c.contains) {
				t.Fatalf("err %q does not mention %q", err, c.contains)
			}
			eventually(t, 5*time.Second, "a replacement worker", func() bool {
				now := pids(p)
				return len(now) == 1 && !now[we.Pid] && readyCount(p) == 1
			})
		})
	}
	t.Run("stderr tail", func(t *testing.T) {
		p := start(t, fakeConfig("crash", 1), nil)
		_, err := p.Exec(context.Background(), job("1", "x"))
		var we *WorkerError
		if !errors.As(err, &we) || len(we.Stderr) == 0 || !strings.Contains(we.Stderr[len(we.Stderr)-1], "Fatal error") {
			t.Fatalf("WorkerError = %#v", err)
		}
		if we.Exit != "exit status 70" {
			t.Fatalf("Exit = %q, want exit status 70", we.Exit)
		}
	})
}

func TestExecTTLKillsWorker(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Env["FAKEWORKER_DELAY"] = "30s"
	cfg.Supervisor.ExecTTL = 200 * time.Millisecond
	p := start(t, cfg, nil)
	before := pids(p)
	t0 := time.Now()
	_, err := p.Exec(context.Background(), job("1", "x"))
	mustBe(t, err, ErrExecTimeout)
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("exec_ttl 200ms returned after %v", d)
	}
	eventually(t, 5*time.Second, "a replacement", func() bool {
		now := pids(p)
		return len(now) == 1 && fmt.Sprint(now) != fmt.Sprint(before)
	})
}

func TestExecCtxEndsJob(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Env["FAKEWORKER_DELAY"] = "30s"
	p := start(t, cfg, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := p.Exec(ctx, job("1", "x"))
	mustBe(t, err, ErrExecTimeout)
	mustBe(t, err, context.DeadlineExceeded)

	eventually(t, 5*time.Second, "a replacement", func() bool { return readyCount(p) == 1 })
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	stopErr := errors.New("shutting down")
	time.AfterFunc(150*time.Millisecond, func() { cancel2(stopErr) })
	_, err = p.Exec(ctx2, job("2", "x"))
	mustBe(t, err, ErrExecTimeout)
	mustBe(t, err, stopErr)
}

func TestExecWithEndedCtxDoesNotTouchTheWorker(t *testing.T) {
	p := start(t, fakeConfig("ack", 1), nil)
	before := pids(p)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Exec(ctx, job("1", "x"))
	mustBe(t, err, ErrNoWorker)
	mustBe(t, err, context.Canceled)
	ws := p.Workers()
	if fmt.Sprint(pids(p)) != fmt.Sprint(before) || ws[0].Jobs != 0 || ws[0].State != "ready" {
		t.Fatalf("worker after a job that was never sent: %+v", ws)
	}
}

func TestNoFreeWorker(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Env["FAKEWORKER_DELAY"] = "700ms"
	cfg.AllocateTimeout = 150 * time.Millisecond
	p := start(t, cfg, nil)
	var wg sync.WaitGroup
	var firstErr error
	wg.Go(func() { _, firstErr = p.Exec(context.Background(), job("1", "x")) })
	eventually(t, 2*time.Second, "the first job to start", func() bool { return readyCount(p) == 0 })
	_, err := p.Exec(context.Background(), job("2", "x"))
	mustBe(t, err, ErrNoWorker)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = p.Exec(ctx, job("3", "x"))
	cancel()
	mustBe(t, err, ErrNoWorker)
	mustBe(t, err, context.DeadlineExceeded)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("the running job failed: %v", firstErr)
	}
}

func TestWaitingExecGetsReleasedWorker(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Env["FAKEWORKER_DELAY"] = "100ms"
	p := start(t, cfg, nil)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { _, errs[i] = p.Exec(context.Background(), job(fmt.Sprint(i), "x")) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("job %d: %v", i, err)
		}
	}
}

func TestStderrForwardedWithPid(t *testing.T) {
	rec := &recorder{}
	p := start(t, fakeConfig("stderr-spam", 1), slog.New(rec))
	pid := p.Workers()[0].Pid
	// 2000 lines (about 230 KB) per job: more than a pipe holds, so this
	// only passes if stderr is drained while the job runs.
	for i := range 3 {
		if out := run(t, p, job(fmt.Sprint(i), "x")); string(out.Body) != fakeworker.AckBody {
			t.Fatalf("reply %q", out.Body)
		}
	}
	spam := func() []slog.Record {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		var out []slog.Record
		for _, r := range rec.recs {
			if strings.HasPrefix(r.Message, "spam line ") {
				out = append(out, r)
			}
		}
		return out
	}
	eventually(t, 5*time.Second, "6000 forwarded lines", func() bool { return len(spam()) == 6000 })
	r := spam()[0]
	if !strings.HasPrefix(r.Message, "spam line 0 of job 1: ") {
		t.Fatalf("first forwarded line %q", r.Message)
	}
	var gotPid int64
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "pid" {
			gotPid = a.Value.Int64()
		}
		return true
	})
	if int(gotPid) != pid {
		t.Fatalf("forwarded line has pid %d, want %d", gotPid, pid)
	}
}

func TestWorkerAskingToStopIsReplacedAndJobRunsElsewhere(t *testing.T) {
	cfg := fakeConfig("ask-stop", 2)
	cfg.Env["FAKEWORKER_ONCE_FILE"] = filepath.Join(t.TempDir(), "once")
	p := start(t, cfg, nil)
	before := pids(p)
	for i := range 4 {
		if out := run(t, p, job(fmt.Sprint(i), "x")); string(out.Body) != fakeworker.AckBody {
			t.Fatalf("job %d reply %q", i, out.Body)
		}
	}
	eventually(t, 5*time.Second, "one worker replaced", func() bool {
		now := pids(p)
		kept := 0
		for pid := range now {
			if before[pid] {
				kept++
			}
		}
		return len(now) == 2 && kept == 1
	})
}

// A worker whose stdin has lost its reader while idle (it died, or closed
// it, before its reaper ran) is replaced, and the job, which it cannot
// have read, runs on another worker instead of failing as a crash.
func TestJobWrittenToAWorkerWithoutStdinRunsElsewhere(t *testing.T) {
	cfg := fakeConfig("deaf-after-boot", 1)
	cfg.Env["FAKEWORKER_ONCE_FILE"] = filepath.Join(t.TempDir(), "once")
	p := start(t, cfg, nil)
	deaf := pids(p)
	out, err := p.Exec(context.Background(), job("1", "x"))
	if err != nil {
		t.Fatalf("Exec = %v, want the job run on the replacement", err)
	}
	if string(out.Body) != fakeworker.AckBody {
		t.Fatalf("reply %q", out.Body)
	}
	for pid := range pids(p) {
		if deaf[pid] {
			t.Errorf("the worker without stdin (pid %d) is still in the pool", pid)
		}
	}
}

// A worker that ends without reading the job written to it (here it left
// its stdin to a child that never reads) did not run it: the job runs on
// the replacement and costs no error.
func TestJobAWorkerNeverReadRunsElsewhere(t *testing.T) {
	cfg := fakeConfig("leave-stdin", 1)
	cfg.Env["FAKEWORKER_ONCE_FILE"] = filepath.Join(t.TempDir(), "once")
	cfg.Env["FAKEWORKER_DELAY"] = "500ms"
	p := start(t, cfg, nil)
	run(t, p, job("1", "first"))
	// The worker now lingers for 500ms without reading; this job is
	// written into its pipe.
	out, err := p.Exec(context.Background(), job("2", "second"))
	if err != nil {
		t.Fatalf("Exec = %v, want the job run on the replacement", err)
	}
	if string(out.Body) != "second" {
		t.Fatalf("reply %q", out.Body)
	}
}

func TestEveryWorkerAskingToStopGivesNoWorker(t *testing.T) {
	p := start(t, fakeConfig("ask-stop", 1), nil)
	_, err := p.Exec(context.Background(), job("1", "x"))
	mustBe(t, err, ErrNoWorker)
}

// A worker that replies and exits at once (before or while the pool
// reads the reply) still delivers its reply, and is replaced.
func TestWorkerExitingAfterReplyKeepsTheReply(t *testing.T) {
	cfg := fakeConfig("die-after", 1)
	cfg.Env["FAKEWORKER_N"] = "1"
	p := start(t, cfg, nil)
	seen := map[int]bool{}
	for i := range 4 {
		eventually(t, 5*time.Second, "a fresh worker", func() bool {
			ws := p.Workers()
			return len(ws) == 1 && ws[0].State == "ready" && !seen[ws[0].Pid]
		})
		seen[p.Workers()[0].Pid] = true
		if out := run(t, p, job(fmt.Sprint(i), "x")); string(out.Body) != fakeworker.AckBody {
			t.Fatalf("job %d: %q", i, out.Body)
		}
	}
}
