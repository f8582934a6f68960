package rpc

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"

	"github.com/pipevisor/pipevisor/consumer"
)

// countingJobs is fakeJobs that counts the Push calls that have begun
// (fakeJobs.block holds them).
type countingJobs struct {
	*fakeJobs
	entered atomic.Int64
}

func (c *countingJobs) Push(ctx context.Context, jobs []consumer.Job) error {
	c.entered.Add(1)
	return c.fakeJobs.Push(ctx, jobs)
}

// waitFor polls cond every millisecond until it holds or within has
// passed, and reports whether it held.
func waitFor(within time.Duration, cond func() bool) bool {
	for end := time.Now().Add(within); !cond(); {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// sendInBackground writes each of frames to conn in a goroutine of its
// own and returns where its result goes: nil once every write went out,
// or the first write error. The test's cleanup closes conn and waits for
// the goroutine.
func sendInBackground(t *testing.T, conn net.Conn, frames iter.Seq[[]byte]) <-chan error {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = conn.Close()
		wg.Wait()
	})
	errc := make(chan error, 1)
	wg.Go(func() {
		for f := range frames {
			if _, err := conn.Write(f); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	})
	return errc
}

// pushFrames returns n JSON jobs.Push request frames with seqs first..,
// back to back.
func pushFrames(first uint32, n int) []byte {
	var out []byte
	for i := range uint32(n) {
		out = append(out, rpcFrame(gf.CodecJSON, first+i, "jobs.Push", []byte(`{"job":{"job":"x","options":{"pipeline":"p"}}}`))...)
	}
	return out
}

// readReplies reads n reply frames from rc and returns them by seq; it
// fails the test on a read error, a duplicate seq or an error reply whose
// seq is not in wantErr.
func readReplies(t *testing.T, rc *rawConn, n int, wantErr func(seq uint32) bool) map[uint32]reply {
	t.Helper()
	got := make(map[uint32]reply, n)
	for len(got) < n {
		b, err := readFrameBytes(rc.conn)
		if err != nil {
			t.Fatalf("after %d of %d replies: %v", len(got), n, err)
		}
		r := parseReply(t, b)
		if _, dup := got[r.seq]; dup {
			t.Fatalf("two replies with seq %d", r.seq)
		}
		if r.isError() != wantErr(r.seq) {
			t.Fatalf("reply to seq %d (%s): error %v, body %q", r.seq, r.method, r.isError(), r.body)
		}
		got[r.seq] = r
	}
	return got
}

// TestRPCCallsInProgressAreBounded: a client that pipelines more requests
// than the limit while the calls cannot finish gets that many calls
// started and no more (the server stops reading the connection instead of
// starting a goroutine per request); once calls finish, the rest are read
// and every request gets its reply, and the connection stays usable.
func TestRPCCallsInProgressAreBounded(t *testing.T) {
	const maxCalls, pipelined = 4, 200
	jobs := &countingJobs{fakeJobs: &fakeJobs{block: make(chan struct{})}}
	s := NewServer(jobs, nil, nil, WithMaxCallsInProgress(maxCalls))
	rc := dialRaw(t, startServer(t, s, "tcp://127.0.0.1:0"))
	if !waitFor(5*time.Second, func() bool { return s.conns.Load() == 1 }) {
		t.Fatal("the server did not take the connection")
	}
	base := runtime.NumGoroutine()
	released := false
	release := func() {
		if !released {
			released = true
			close(jobs.block)
		}
	}
	defer release()

	if err := rc.conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.conn.Write(pushFrames(1, pipelined)); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return jobs.entered.Load() >= maxCalls }) {
		t.Fatalf("%d Push calls began, want %d", jobs.entered.Load(), maxCalls)
	}
	time.Sleep(50 * time.Millisecond) // room for the server to read on, if it would
	if n := jobs.entered.Load(); n != maxCalls {
		t.Fatalf("%d Push calls began with %d allowed in progress", n, maxCalls)
	}
	if grew := runtime.NumGoroutine() - base; grew > maxCalls+4 {
		t.Fatalf("%d more goroutines with %d calls allowed in progress", grew, maxCalls)
	}

	release()
	readReplies(t, rc, pipelined, func(uint32) bool { return false })
	jobs.mu.Lock()
	pushed := len(jobs.pushed)
	jobs.mu.Unlock()
	if pushed != pipelined {
		t.Errorf("pushed %d times, want %d", pushed, pipelined)
	}
	if r := jsonCall(t, rc, 1, "jobs.List", `{}`); r.isError() {
		t.Errorf("List after the pipelined calls: %q", r.body)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connection goroutines, want 1", n)
	}
}

// TestRPCPipeliningPastTheLimitGetsEveryReply: a client that writes many
// more requests than the limit while reading its replies gets every
// reply, including the error replies net/rpc writes itself (unknown
// method, undecodable body), which free their place like any other.
func TestRPCPipeliningPastTheLimitGetsEveryReply(t *testing.T) {
	const maxCalls, pipelined = 2, 1000
	fake := &fakeJobs{pipelines: []string{"a", "b"}}
	s := NewServer(fake, nil, nil, WithMaxCallsInProgress(maxCalls))
	rc := dialRaw(t, startServer(t, s, "tcp://127.0.0.1:0"))
	bad := func(seq uint32) bool { return seq%10 == 0 || seq%10 == 5 }
	var reqs []byte
	for seq := uint32(1); seq <= pipelined; seq++ {
		method, body := "jobs.List", `{}`
		switch seq % 10 {
		case 0:
			method = "jobs.Nope"
		case 5:
			body = `{"not json`
		}
		reqs = append(reqs, rpcFrame(gf.CodecJSON, seq, method, []byte(body))...)
	}
	if err := rc.conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	werr := sendInBackground(t, rc.conn, slices.Chunk(reqs, 512))
	got := readReplies(t, rc, pipelined, bad)
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	for seq, r := range got {
		if !bad(seq) && !strings.Contains(string(r.body), `"a"`) {
			t.Fatalf("List reply %d: %q", seq, r.body)
		}
	}
}

// manyStats returns n pipeline stats, for replies of some size.
func manyStats(n int) []consumer.Stat {
	out := make([]consumer.Stat, n)
	for i := range out {
		out[i] = consumer.Stat{
			Pipeline: fmt.Sprintf("pipeline-%05d", i), Driver: "memory", Queue: fmt.Sprintf("queue-%05d", i),
			Priority: 10, Ready: 3, Active: 2, Delayed: -1, Acked: 120, Consuming: true,
		}
	}
	return out
}

// TestRPCUnreadRepliesEndTheConnection: a client that pipelines requests and
// never reads the replies fills its receive buffer; the reply write that
// can no longer go out ends the connection once the frame timeout has
// passed, and meanwhile the server starts no more goroutines than the
// limit of calls in progress allows. (The write used to block forever
// while the server read on and started a goroutine per request.)
func TestRPCUnreadRepliesEndTheConnection(t *testing.T) {
	const limit = 200 * time.Millisecond
	const maxCalls, pipelined = 8, 4000
	logs := &logBuffer{}
	fake := &fakeJobs{stats: manyStats(2000)} // a reply of some 300 KB
	s := NewServer(fake, nil, slog.New(slog.NewTextHandler(logs, nil)), WithFrameTimeout(limit), WithMaxCallsInProgress(maxCalls))
	rc := dialRaw(t, startServer(t, s, "tcp://127.0.0.1:0"))
	if !waitFor(5*time.Second, func() bool { return s.conns.Load() == 1 }) {
		t.Fatal("the server did not take the connection")
	}
	base := runtime.NumGoroutine()

	if err := rc.conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	werr := sendInBackground(t, rc.conn, func(yield func([]byte) bool) {
		for seq := uint32(1); seq <= pipelined; seq++ {
			if !yield(rpcFrame(gf.CodecJSON, seq, "jobs.Stat", []byte(`{}`))) {
				return
			}
		}
	})

	start := time.Now()
	most := 0
	for s.conns.Load() != 0 {
		most = max(most, runtime.NumGoroutine()-base)
		if most > maxCalls+8 {
			t.Fatalf("%d more goroutines with %d calls allowed in progress", most, maxCalls)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the connection is still open %v after the client stopped reading", time.Since(start))
		}
		time.Sleep(time.Millisecond)
	}
	if !logs.contains(ErrReplyTimeout.Error()) {
		t.Errorf("the connection ended without %q in the log", ErrReplyTimeout)
	}

	// The client sees the connection closed: reads end (after whatever
	// replies were buffered), and writes fail.
	buf := make([]byte, 64<<10)
	var err error
	for err == nil {
		_, err = rc.conn.Read(buf)
	}
	if !closedByPeer(err) {
		t.Errorf("read = %v, want the connection closed by the server", err)
	}
	err = <-werr // nil: every request went out before the close
	for i := uint32(1); err == nil && i <= 3; i++ {
		_, err = rc.conn.Write(rpcFrame(gf.CodecJSON, i, "jobs.Stat", []byte(`{}`)))
	}
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("write = %v, want it to fail on the connection the server closed", err)
	}
}

// TestRPCIdleAfterReplyOutlivesFrameTimeout: the write deadline of a reply
// does not end a connection that idles afterwards.
func TestRPCIdleAfterReplyOutlivesFrameTimeout(t *testing.T) {
	const limit = 50 * time.Millisecond
	s := NewServer(&fakeJobs{stats: manyStats(10)}, nil, nil, WithFrameTimeout(limit))
	rc := dialRaw(t, startServer(t, s, "tcp://127.0.0.1:0"))
	for seq := range uint32(3) {
		if r := jsonCall(t, rc, seq, "jobs.Stat", `{}`); r.isError() {
			t.Fatalf("Stat %d: %q", seq, r.body)
		}
		time.Sleep(3 * limit)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connection goroutines, want 1", n)
	}
}
