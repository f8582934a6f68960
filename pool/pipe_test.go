package pool

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// newTestPipe returns a stdoutPipe on a fresh pipe and the pipe's write
// end (the "worker"). It fails the test if blocking mode is unavailable:
// the pool's speed depends on it, and Linux with /proc provides it.
func newTestPipe(t *testing.T) (*stdoutPipe, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := newStdoutPipe(r, false)
	t.Cleanup(func() {
		_ = w.Close()
		_ = p.Close()
	})
	if !p.blocking {
		t.Fatal("stdout pipe fell back to the poller: /proc/self/fd could not be opened")
	}
	if fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p.rfd), syscall.F_GETFL, 0); errno != 0 || fl&syscall.O_NONBLOCK != 0 {
		t.Fatalf("read end flags %#x (errno %v): want blocking mode", fl, errno)
	}
	return p, w
}

// readAsync starts one Read and returns its result on a channel.
func readAsync(p *stdoutPipe) <-chan error {
	res := make(chan error, 1)
	go func() {
		var b [16]byte
		_, err := p.Read(b[:])
		res <- err
	}()
	return res
}

func waitRead(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("read not interrupted within 5s")
		return nil
	}
}

func TestStdoutPipeReadsWhatTheWorkerWrote(t *testing.T) {
	p, w := newTestPipe(t)
	if _, err := w.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	n, err := p.Read(b)
	if err != nil || string(b[:n]) != "reply" {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}
	// A deadline removed before it passes changes nothing.
	_ = p.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_ = p.SetReadDeadline(time.Time{})
	res := readAsync(p)
	time.Sleep(30 * time.Millisecond) // past the removed deadline
	if _, err := w.Write([]byte("next")); err != nil {
		t.Fatal(err)
	}
	if err := waitRead(t, res); err != nil || p.Tripped() {
		t.Fatalf("read after a removed deadline: %v, tripped %v", err, p.Tripped())
	}
}

func TestStdoutPipeDeadlineInterruptsABlockedRead(t *testing.T) {
	p, _ := newTestPipe(t)
	res := readAsync(p)
	_ = p.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := waitRead(t, res); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read = %v, want os.ErrDeadlineExceeded", err)
	}
	if !p.Tripped() {
		t.Error("Tripped = false after the deadline passed")
	}
	// Tripped for good: clearing the deadline does not bring it back.
	_ = p.SetReadDeadline(time.Time{})
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after trip = %v, want os.ErrDeadlineExceeded", err)
	}
}

// The pool holds no write end of its own: a read that waits ends with EOF
// as soon as the worker closes its stdout, whether or not it exited.
func TestStdoutPipeEOFWhenTheWorkerClosesStdout(t *testing.T) {
	p, w := newTestPipe(t)
	res := readAsync(p)
	_ = w.Close()
	if err := waitRead(t, res); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the worker closed stdout = %v, want EOF", err)
	}
}

func TestStdoutPipeTripWithStdoutHeldElsewhere(t *testing.T) {
	p, _ := newTestPipe(t) // w stays open: a grandchild holding stdout
	res := readAsync(p)
	p.trip()
	if err := waitRead(t, res); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestStdoutPipeTripWhenFull(t *testing.T) {
	p, w := newTestPipe(t)
	// Fill the pipe: the wake byte cannot be written, and need not be.
	big := make([]byte, 1<<20)
	go func() { _, _ = w.Write(big) }()
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { p.trip(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("trip blocked on a full pipe")
	}
	if _, err := p.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %v, want os.ErrDeadlineExceeded", err)
	}
	_ = p.Close()
	p.trip() // after Close: nothing to do, no panic
}

// TestPollerFallback runs the pool with workers' stdout read through Go's
// poller, as where /proc/self/fd cannot be opened: jobs, deadlines that
// are reset between jobs, exec_ttl, a ctx ending and crashes behave as in
// blocking mode.
func TestPollerFallback(t *testing.T) {
	cfgFor := func(mode string, n int) Config {
		cfg := fakeConfig(mode, n)
		cfg.pollStdout = true
		return cfg
	}
	t.Run("jobs and deadlines", func(t *testing.T) {
		p := start(t, cfgFor("echo", 1), nil)
		for i := range 3 {
			ctx, cancel := context.WithCancel(context.Background()) // job 1: no deadline after one
			if i != 1 {
				cancel()
				ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
			}
			out, err := p.Exec(ctx, job(strconv.Itoa(i), "body"))
			cancel()
			if err != nil || string(out.Body) != "body" {
				t.Fatalf("job %d: %q, %v", i, out.Body, err)
			}
		}
		p.mu.Lock()
		blocking := p.all[0].proc.(*proc).stdout.blocking
		p.mu.Unlock()
		if blocking {
			t.Fatal("stdout in blocking mode despite pollStdout")
		}
	})
	t.Run("exec_ttl", func(t *testing.T) {
		cfg := cfgFor("slow", 1)
		cfg.Env["FAKEWORKER_DELAY"] = "30s"
		cfg.Supervisor.ExecTTL = 100 * time.Millisecond
		p := start(t, cfg, nil)
		_, err := p.Exec(context.Background(), job("1", "x"))
		mustBe(t, err, ErrExecTimeout)
	})
	t.Run("ctx ends", func(t *testing.T) {
		cfg := cfgFor("slow", 1)
		cfg.Env["FAKEWORKER_DELAY"] = "30s"
		p := start(t, cfg, nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := p.Exec(ctx, job("1", "x"))
		mustBe(t, err, ErrExecTimeout)
		mustBe(t, err, context.Canceled)
	})
	for _, mode := range []string{"crash", "orphan-crash"} {
		t.Run(mode, func(t *testing.T) {
			p := start(t, cfgFor(mode, 1), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := p.Exec(ctx, job("1", "x"))
			mustBe(t, err, ErrWorkerCrashed)
		})
	}
}
