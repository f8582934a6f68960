package notify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listen makes a unixgram socket, points NOTIFY_SOCKET at it and returns a
// channel of the datagrams it receives. The reader stops at test cleanup.
func listen(t *testing.T) <-chan string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	})
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return ch
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s")
		return ""
	}
}

func TestReadyWatchdogStoppingInOrder(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "40000") // 40ms: pings every 20ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := New(nil)
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Watchdog(ctx, func() error { return nil }) }()
	if got := next(t, ch); got != "READY=1" {
		t.Fatalf("first message %q, want READY=1", got)
	}
	for range 3 {
		if got := next(t, ch); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watchdog: %v", err)
	}
	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	for {
		got := next(t, ch)
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" { // a ping sent just before cancel
			t.Fatalf("got %q, want STOPPING=1", got)
		}
	}
}

func TestWatchdogWithheldWhileUnhealthy(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "20000")
	var sick atomic.Bool
	sick.Store(true)
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- New(nil).Watchdog(ctx, func() error {
			calls.Add(1)
			if sick.Load() {
				return errors.New("pool has no workers")
			}
			return nil
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("healthy was not polled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case m := <-ch:
		t.Fatalf("sent %q while unhealthy", m)
	default:
	}
	sick.Store(false)
	if got := next(t, ch); got != "WATCHDOG=1" {
		t.Fatalf("got %q after recovery, want WATCHDOG=1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNoopWithoutNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := New(nil)
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := n.Stopping(); err != nil {
		t.Fatalf("Stopping: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Watchdog(context.Background(), func() error { return nil }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watchdog: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog blocked with the watchdog off")
	}
}

func TestWatchdogForAnotherPidIsOff(t *testing.T) {
	listen(t)
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if d, err := Interval(); err != nil || d != 0 {
		t.Fatalf("Interval = %v, %v; want 0, nil", d, err)
	}
}

func TestBadWatchdogUsec(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "soon")
	err := New(nil).Watchdog(context.Background(), func() error { return nil })
	if !errors.Is(err, ErrBadWatchdog) {
		t.Fatalf("err = %v, want ErrBadWatchdog", err)
	}
}

func TestSendFailureIsReported(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens.sock"))
	if err := New(nil).Ready(); err == nil {
		t.Fatal("Ready to a socket nobody listens on returned nil")
	}
}
