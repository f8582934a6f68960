package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/retry"
	"github.com/pipevisor/pipevisor/status"
)

// ackExec acks every job.
type ackExec struct{}

func (x ackExec) Exec(context.Context, frame.Payload) (frame.Payload, error) {
	return frame.Payload{}, nil
}

// flakyQueue is a memory queue whose broker connection can be "lost".
type flakyQueue struct {
	*memjobs.Queue
	down atomic.Pointer[error]
}

func (q *flakyQueue) Check() error {
	if p := q.down.Load(); p != nil {
		return *p
	}
	return q.Queue.Check()
}

// serve starts srv on a loopback port and returns its base URL. The server
// is shut down, and Serve's return awaited, at cleanup.
func serve(t *testing.T, srv *status.Server) string {
	t.Helper()
	ln, err := status.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() { serveErr = srv.Serve(ctx, ln) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if serveErr != nil {
			t.Errorf("Serve: %v", serveErr)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitStatus polls url until it answers want, and returns the body.
func waitStatus(t *testing.T, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q, want %d", url, code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReadyFollowsPipelines(t *testing.T) {
	var mu sync.Mutex
	queues := map[string]*flakyQueue{}
	mgr := jobs.New(jobs.Config{
		Factory: func(_ context.Context, p config.Pipeline) (jobs.Driver, error) {
			q := &flakyQueue{Queue: memjobs.New(p.Name, *p.Memory, nil)}
			mu.Lock()
			queues[p.Name] = q
			mu.Unlock()
			return q, nil
		},
		Executor: exectest.Func(ackExec{}.Exec),
		Pipelines: map[string]config.Pipeline{
			"emails": {Driver: config.DriverMemory, Concurrency: 1, Retry: retry.Defaults(), Memory: &memjobs.Config{}},
			"orders": {Driver: config.DriverMemory, Concurrency: 1, Retry: retry.Defaults(), Memory: &memjobs.Config{}},
			"idle":   {Driver: config.DriverMemory, Concurrency: 1, Retry: retry.Defaults(), Memory: &memjobs.Config{}},
		},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mgr.Stop(ctx)
	})
	url := serve(t, status.New(status.Config{Ready: mgr.Ready}))

	if code, body := get(t, url+"/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not started") {
		t.Fatalf("before Start: %d %q, want 503 naming the cause", code, body)
	}
	if err := mgr.Start(context.Background(), []string{"emails", "orders"}); err != nil {
		t.Fatal(err)
	}
	if body := waitStatus(t, url+"/ready", http.StatusOK); body != "ready\n" {
		t.Fatalf("ready body %q", body)
	}

	// The broker connection of "orders" drops: /ready names it and why.
	mu.Lock()
	orders := queues["orders"]
	mu.Unlock()
	lost := errors.New("connection closed by the broker")
	orders.down.Store(&lost)
	body := waitStatus(t, url+"/ready", http.StatusServiceUnavailable)
	if !strings.Contains(body, "orders") || !strings.Contains(body, "connection closed by the broker") {
		t.Fatalf("503 body %q does not name the pipeline and the reason", body)
	}
	if strings.Contains(body, "emails") || strings.Contains(body, "idle") {
		t.Fatalf("503 body %q names healthy or unconsumed pipelines", body)
	}
	code, js := get(t, url+"/ready", "Accept", "application/json")
	var rep struct {
		Status  string   `json:"status"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil || code != http.StatusServiceUnavailable ||
		rep.Status != "unavailable" || len(rep.Reasons) != 1 || !strings.Contains(rep.Reasons[0], "orders") {
		t.Fatalf("JSON: %d %q (%v)", code, js, err)
	}

	// Redialed: ready again.
	orders.down.Store(nil)
	waitStatus(t, url+"/ready", http.StatusOK)

	// A pipeline whose consumer is closed under it is down for good.
	mu.Lock()
	emails := queues["emails"]
	mu.Unlock()
	if err := emails.Queue.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	body = waitStatus(t, url+"/ready", http.StatusServiceUnavailable)
	if !strings.Contains(body, "emails") || !errors.Is(mgr.Ready(), consumer.ErrClosed) {
		t.Fatalf("after close: body %q, Ready %v", body, mgr.Ready())
	}
}

func TestHealth(t *testing.T) {
	var workers atomic.Int32
	srv := status.New(status.Config{
		Health: func() error {
			if workers.Load() == 0 {
				return errors.New("pool: no live worker")
			}
			return nil
		},
		UnavailableStatus: http.StatusInternalServerError,
	})
	url := serve(t, srv)
	if code, body := get(t, url+"/health"); code != http.StatusInternalServerError || body != "pool: no live worker\n" {
		t.Fatalf("no workers: %d %q", code, body)
	}
	workers.Store(2)
	if code, body := get(t, url+"/health"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("with workers: %d %q", code, body)
	}
	// Ready was not configured: always ready.
	if code, _ := get(t, url+"/ready"); code != http.StatusOK {
		t.Fatalf("/ready without a check: %d", code)
	}
	resp, err := http.Post(url+"/health", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /health: %d", resp.StatusCode)
	}
	if code, _ := get(t, url+"/nothing"); code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", code)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ln, err := status.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- status.New(status.Config{}).Serve(ctx, ln) }()
	if code, _ := get(t, "http://"+addr+"/health"); code != http.StatusOK {
		t.Fatalf("health %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get("http://" + addr + "/health"); err == nil {
		t.Fatal("still serving after Serve returned")
	}
	if _, err := status.Listen(context.Background(), addr); err != nil {
		t.Fatalf("port not released: %v", err)
	}
}
