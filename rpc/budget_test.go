package rpc

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// pushFrame is a JSON jobs.Push request frame with seq whose job payload
// is size bytes.
func pushFrame(seq uint32, size int) []byte {
	body := `{"job":{"job":"x","payload":"` + base64.StdEncoding.EncodeToString(make([]byte, size)) + `","options":{"pipeline":"p"}}}`
	return rpcFrame(gf.CodecJSON, seq, "jobs.Push", []byte(body))
}

// TestClientPushOverTheFrameLimitSaysTheLimit: a push larger than the
// frame limit fails with an error that says how large it was and what the
// limit is (not "connection reset by peer"), matches ErrRequestTooLarge,
// and reaches no pipeline; the server keeps serving. Both with the
// default 64 MiB limit and with a smaller in-flight budget, which lowers
// the frame limit to itself.
func TestClientPushOverTheFrameLimitSaysTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		payload int
		want    string
	}{
		{"default", nil, MaxRequestSize, "jobs.Push: push of 64.0 MiB exceeds the RPC frame limit of 64 MiB"},
		{"budget", []Option{WithMaxInflightBytes(2 << 20)}, 3 << 20, "jobs.PushBatch: push of 3.0 MiB exceeds the RPC frame limit of 2 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobs := &fakeJobs{}
			addr := startServer(t, NewServer(jobs, nil, nil, tc.opts...), "tcp://127.0.0.1:0")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cl, err := Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			job := consumer.Job{Name: "big", Pipeline: "p", Payload: make([]byte, tc.payload)}
			if strings.Contains(tc.want, "PushBatch") {
				err = cl.PushBatch(ctx, []consumer.Job{job, {Name: "small", Pipeline: "p"}})
			} else {
				err = cl.Push(ctx, job)
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("push: %v, want %q", err, tc.want)
			}
			if !errors.Is(err, ErrRequestTooLarge) {
				t.Errorf("push: %v does not match ErrRequestTooLarge", err)
			}
			jobs.mu.Lock()
			pushed := len(jobs.pushed)
			jobs.mu.Unlock()
			if pushed != 0 {
				t.Errorf("%d pushes reached the pipelines", pushed)
			}
			cl2, err := Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cl2.Close()
			if err := cl2.Push(ctx, consumer.Job{Name: "small", Pipeline: "p"}); err != nil {
				t.Fatalf("push after the refused one: %v", err)
			}
		})
	}
}

// TestInflightBudgetHoldsBackTheNextFrame: a frame whose size does not fit
// in what the other connections' requests hold waits, its body unread,
// until one of them has its reply; then it is served.
func TestInflightBudgetHoldsBackTheNextFrame(t *testing.T) {
	jobs := &fakeJobs{}
	srv := NewServer(jobs, nil, nil, WithMaxInflightBytes(4<<20))
	addr := startServer(t, srv, "tcp://127.0.0.1:0")
	a, b := pushFrame(1, 2<<20), pushFrame(1, 2<<20)
	sizeA := int64(len(a) - requestHeaderSize)

	ca := dialRaw(t, addr)
	if _, err := ca.conn.Write(a[:requestHeaderSize+1000]); err != nil { // A: header and part of its body
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "A's frame to hold its size", func() bool { return srv.budget.inUse() == sizeA })

	cb := dialRaw(t, addr)
	bSent := make(chan error, 1)
	go func() { _, err := cb.conn.Write(b); bSent <- err }()
	if err := cb.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := cb.conn.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("B was answered while A held the budget: %v", err)
	}
	if got := srv.budget.inUse(); got != sizeA {
		t.Fatalf("budget in use %d while B waits, want A's %d", got, sizeA)
	}

	if r := parseReply(t, ca.roundTrip(a[requestHeaderSize+1000:])); r.isError() {
		t.Fatalf("A: %s", r.body)
	}
	if err := cb.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	out, err := readFrameBytes(cb.conn)
	if err != nil {
		t.Fatalf("B: %v", err)
	}
	if r := parseReply(t, out); r.isError() {
		t.Fatalf("B: %s", r.body)
	}
	if err := <-bSent; err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the budget to empty", func() bool { return srv.budget.inUse() == 0 })
	jobs.mu.Lock()
	defer jobs.mu.Unlock()
	if len(jobs.pushed) != 2 {
		t.Fatalf("%d pushes served, want 2", len(jobs.pushed))
	}
}

// TestInflightBudgetRefusesAfterTheFrameTimeout: a frame that found no
// room within the frame timeout gets an error reply naming
// rpc.max_inflight_bytes and its connection closes; the request that
// held the budget is served, and the budget is whole again afterwards.
func TestInflightBudgetRefusesAfterTheFrameTimeout(t *testing.T) {
	jobs := &fakeJobs{block: make(chan struct{})}
	srv := NewServer(jobs, nil, nil, WithMaxInflightBytes(4<<20), WithFrameTimeout(300*time.Millisecond))
	addr := startServer(t, srv, "tcp://127.0.0.1:0")
	a, b := pushFrame(1, 2<<20), pushFrame(7, 2<<20)

	ca := dialRaw(t, addr)
	aReply := make(chan []byte, 1)
	go func() {
		if _, err := ca.conn.Write(a); err != nil {
			aReply <- nil
			return
		}
		out, _ := readFrameBytes(ca.conn)
		aReply <- out
	}()
	eventually(t, 5*time.Second, "A's call to hold its size", func() bool { return srv.budget.inUse() > 0 })

	cb := dialRaw(t, addr)
	go func() { _, _ = cb.conn.Write(b) }()
	if err := cb.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	out, err := readFrameBytes(cb.conn)
	if err != nil {
		t.Fatalf("B: %v", err)
	}
	r := parseReply(t, out)
	for _, want := range []string{"rpc: server busy", "rpc.max_inflight_bytes budget of 4 MiB", "within 300ms"} {
		if !r.isError() || r.seq != 7 || !strings.Contains(string(r.body), want) {
			t.Fatalf("B's reply: error %v, seq %d, %q; want an error to seq 7 saying %q", r.isError(), r.seq, r.body, want)
		}
	}
	if _, err := cb.conn.Read(make([]byte, 1)); !closedByPeer(err) {
		t.Fatalf("read after B's refusal = %v, want the connection closed", err)
	}
	close(jobs.block)
	if out := <-aReply; out == nil || parseReply(t, out).isError() {
		t.Fatalf("A was not served: %q", out)
	}
	eventually(t, 5*time.Second, "the budget to empty", func() bool { return srv.budget.inUse() == 0 })
}

// TestMaxConnections: past the connection limit a new client is not
// served until a connection closes.
func TestMaxConnections(t *testing.T) {
	srv := NewServer(&fakeJobs{pipelines: []string{"p"}}, nil, nil, WithMaxConnections(2))
	addr := startServer(t, srv, "tcp://127.0.0.1:0")
	ctx := t.Context()
	dial := func() *Client {
		c, err := Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c1, c2 := dial(), dial()
	for _, c := range []*Client{c1, c2} {
		if _, err := c.List(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c3 := dial()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c3.List(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third connection: %v, want no answer while two are open", err)
	}
	_ = c1.Close()
	_ = c3.Close()
	c4 := dial()
	long, cancel4 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel4()
	if _, err := c4.List(long); err != nil {
		t.Fatalf("after two closed: %v", err)
	}
	if n := srv.conns.Load(); n > 2 {
		t.Fatalf("%d connections served, limit 2", n)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
