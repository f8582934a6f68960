package rpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// hugeHeader is a valid request frame header announcing a 4 GiB payload.
func hugeHeader() []byte {
	f := gf.NewFrame()
	f.WriteVersion(f.Header(), gf.Version1)
	f.WriteFlags(f.Header(), gf.CodecProto)
	f.WriteOptions(f.HeaderPtr(), 1, 9)
	f.WritePayloadLen(f.Header(), 0xFFFFFFFF)
	f.WriteCRC(f.Header())
	return f.Bytes()[:f.ReadHL(f.Header())*gf.WORD]
}

// TestHugeRequestHeaderEndsTheConnection: a request header that announces
// 4 GiB gets an error reply naming the frame limit at once, with no
// allocation of that size (it allocated 4 GiB before, and aborted the
// process where that failed); the connection ends once the rest of the
// frame has not come within the frame timeout, and the server keeps
// serving other connections.
func TestHugeRequestHeaderEndsTheConnection(t *testing.T) {
	addr := startServer(t, NewServer(&fakeJobs{}, nil, nil, WithFrameTimeout(300*time.Millisecond)), "tcp://127.0.0.1:0")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rc := dialRaw(t, addr)
	if _, err := rc.conn.Write(hugeHeader()); err != nil {
		t.Fatal(err)
	}
	if err := rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := readFrameBytes(rc.conn)
	if err != nil {
		t.Fatalf("no reply to a 4 GiB header: %v", err)
	}
	r := parseReply(t, b)
	want := "rpc: request of 4096.0 MiB exceeds the RPC frame limit of 64 MiB (4294967295 > 67108864 bytes)"
	if !r.isError() || r.seq != 1 || string(r.body) != want {
		t.Fatalf("reply: error %v, seq %d, %q; want an error reply to seq 1 reading %q", r.isError(), r.seq, r.body, want)
	}
	if _, err := rc.conn.Read(make([]byte, 1)); !closedByPeer(err) {
		t.Fatalf("read after the reply = %v, want the connection closed", err)
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.TotalAlloc) - int64(before.TotalAlloc); grew > 64<<20 {
		t.Fatalf("a 4 GiB header made the server allocate %d MiB", grew>>20)
	}
	if _, err := Dial(t.Context(), addr); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

// TestLimitConnPassesFramesSplitAnyhow: frames that pass the checks go
// through byte for byte however the reads split them, and the header
// checks follow frame boundaries (a header after a payload is checked):
// size, CRC and a seq still in progress.
func TestLimitConnPassesFramesSplitAnyhow(t *testing.T) {
	small := rpcFrame(gf.CodecJSON, 1, "jobs.List", []byte(`{}`))
	other := rpcFrame(gf.CodecJSON, 2, "jobs.List", []byte(`{}`))
	badCRC := bytes.Clone(other)
	badCRC[6] ^= 0xFF
	for _, tc := range []struct {
		name string
		tail []byte
		want error
	}{
		{"huge", hugeHeader(), ErrRequestTooLarge},
		{"crc", badCRC, ErrBadHeader},
		{"seq", small, ErrDuplicateSeq},
	} {
		stream := slices.Concat(small, other, tc.tail)
		for _, chunk := range []int{1, 3, 7, 12, 13, 20, 21, 64, len(stream)} {
			a, b := net.Pipe()
			var wg sync.WaitGroup
			wg.Go(func() {
				for rest := stream; len(rest) > 0; {
					k := min(chunk, len(rest))
					if _, err := a.Write(rest[:k]); err != nil {
						return
					}
					rest = rest[k:]
				}
				_ = a.Close()
			})
			got, err := io.ReadAll(newLimitConn(b, 0))
			_ = b.Close()
			wg.Wait()
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s, chunks of %d: err = %v, want %v at the third header", tc.name, chunk, err, tc.want)
			}
			n := len(small) + len(other)
			if len(got) < n || !bytes.Equal(got[:n], stream[:n]) {
				t.Fatalf("%s, chunks of %d: passed %d bytes, want the two frames intact first", tc.name, chunk, len(got))
			}
		}
	}
}

// closedByPeer reports whether err from a client read means the server
// closed the connection (as opposed to the client's own read deadline).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// waitConns waits until s runs no connection goroutine.
func waitConns(t *testing.T, s *Server, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); s.conns.Load() != 0; {
		if time.Now().After(end) {
			t.Fatalf("%d connection goroutines still running after %v", s.conns.Load(), within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStalledFrameEndsTheConnection: a client that starts a frame and
// stalls, or dribbles it slower than the frame timeout allows, is
// disconnected once the timeout has passed since the frame's first byte,
// and its connection goroutine ends.
func TestStalledFrameEndsTheConnection(t *testing.T) {
	const limit = 200 * time.Millisecond
	req := rpcFrame(gf.CodecJSON, 1, "jobs.Push", []byte(`{"job":{"job":"x","payload":"`+strings.Repeat("A", 100)+`","options":{"pipeline":"p"}}}`))
	for _, tc := range []struct {
		name    string
		sent    []byte
		dribble bool // then one more byte every limit/5
	}{
		{"part of a header", req[:5], false},
		{"header", req[:requestHeaderSize], false},
		{"header and part of the payload", req[:requestHeaderSize+10], false},
		{"a frame a byte at a time", req[:1], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(&fakeJobs{}, nil, nil, WithFrameTimeout(limit))
			rc := dialRaw(t, startServer(t, s, "tcp://127.0.0.1:0"))
			// One finished call first: the limit runs per frame, not per connection.
			if r := jsonCall(t, rc, 9, "jobs.List", `{}`); r.isError() {
				t.Fatalf("List: %q", r.body)
			}
			start := time.Now()
			if _, err := rc.conn.Write(tc.sent); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			defer wg.Wait()
			defer close(stop)
			if tc.dribble {
				wg.Go(func() {
					for _, b := range req[len(tc.sent):] {
						select {
						case <-stop:
							return
						case <-time.After(limit / 5):
						}
						if _, err := rc.conn.Write([]byte{b}); err != nil {
							return
						}
					}
				})
			}
			if err := rc.conn.SetReadDeadline(time.Now().Add(10 * limit)); err != nil {
				t.Fatal(err)
			}
			_, err := rc.conn.Read(make([]byte, 1))
			if !closedByPeer(err) {
				t.Fatalf("read after a stalled frame = %v, want the server to close the connection", err)
			}
			if took := time.Since(start); took < limit {
				t.Errorf("closed after %v, before the %v limit", took, limit)
			}
			waitConns(t, s, 10*limit)
		})
	}
}

// TestIdleConnectionOutlivesFrameTimeout: time between frames is not
// limited, also after a frame that arrived in pieces (whose deadline must
// be lifted), and a frame whose pieces arrive within the limit is served.
func TestIdleConnectionOutlivesFrameTimeout(t *testing.T) {
	const limit = 50 * time.Millisecond
	fake := &fakeJobs{pipelines: []string{"a"}}
	s := NewServer(fake, nil, nil, WithFrameTimeout(limit))
	addr := startServer(t, s, "tcp://127.0.0.1:0")
	client := dialClient(t, addr)
	rc := dialRaw(t, addr)

	req := rpcFrame(gf.CodecJSON, 1, "jobs.List", []byte(`{}`))
	if err := rc.conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]byte{req[:7], req[7 : requestHeaderSize+3], req[requestHeaderSize+3:]} {
		if _, err := rc.conn.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(limit / 5)
	}
	b, err := readFrameBytes(rc.conn)
	if err != nil {
		t.Fatalf("reply to a frame sent in pieces: %v", err)
	}
	if r := parseReply(t, b); r.isError() || r.seq != 1 {
		t.Fatalf("reply to a frame sent in pieces: seq %d %q", r.seq, r.body)
	}
	if _, err := client.List(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	time.Sleep(4 * limit) // idle, both connections
	if r := jsonCall(t, rc, 2, "jobs.List", `{}`); r.isError() {
		t.Errorf("raw connection after idling: %q", r.body)
	}
	if got, err := client.List(testCtx(t)); err != nil || len(got) != 1 {
		t.Errorf("client after idling: %v, %v", got, err)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connection goroutines, want 2", n)
	}
}

// TestStopEndsStalledConnection: stopping the server ends a connection
// stalled in the middle of a frame at once, not after the frame timeout.
func TestStopEndsStalledConnection(t *testing.T) {
	s := NewServer(&fakeJobs{}, nil, nil) // the default timeout: a minute
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := Listen(ctx, "tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln) }()
	rc := dialRaw(t, "tcp://"+ln.Addr().String())
	if r := jsonCall(t, rc, 1, "jobs.List", `{}`); r.isError() {
		t.Fatalf("List: %q", r.body)
	}
	if _, err := rc.conn.Write(rpcFrame(gf.CodecJSON, 2, "jobs.List", []byte(`{}`))[:15]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the server read the partial header

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not return with a connection stalled mid-frame")
	}
	if n := s.conns.Load(); n != 0 {
		t.Errorf("%d connection goroutines still running after ServeListener returned", n)
	}
	if err := rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.conn.Read(make([]byte, 1)); !closedByPeer(err) {
		t.Errorf("read after stop = %v, want the connection closed", err)
	}
}

// logBuffer is a slog destination the test can poll.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

// TestDuplicateSeqInProgressEndsTheConnection: a second request with the
// seq of a call in progress is not run; the first call finishes and its
// reply arrives, then the connection closes. (goridge keeps one reply
// codec per seq: the second reply used to panic inside goridge, the guard
// swallowed it, and the client waited forever for a reply to a Push that
// had run.)
func TestDuplicateSeqInProgressEndsTheConnection(t *testing.T) {
	fake := &fakeJobs{block: make(chan struct{})}
	logs := &logBuffer{}
	s := NewServer(fake, nil, slog.New(slog.NewTextHandler(logs, nil)))
	rc := dialRaw(t, startServer(t, s, "tcp://127.0.0.1:0"))
	push := rpcFrame(gf.CodecJSON, 7, "jobs.Push", []byte(`{"job":{"job":"x","options":{"pipeline":"p"}}}`))
	if _, err := rc.conn.Write(slices.Concat(push, push)); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); !logs.contains(ErrDuplicateSeq.Error()); {
		if time.Now().After(end) {
			close(fake.block)
			t.Fatal("the server did not refuse the second request with seq 7")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(fake.block) // the first Push may finish now
	if err := rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := readFrameBytes(rc.conn)
	if err != nil {
		t.Fatalf("reply to the first Push: %v", err)
	}
	if r := parseReply(t, b); r.isError() || r.seq != 7 {
		t.Fatalf("reply to the first Push: seq %d %q", r.seq, r.body)
	}
	if b, err := readFrameBytes(rc.conn); !closedByPeer(err) {
		t.Fatalf("after the first reply: %x, %v; want the connection closed", b, err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.pushed) != 1 {
		t.Errorf("pushed %d times, want once", len(fake.pushed))
	}
}

// TestSeqReusedAfterItsReply: a client may reuse a seq as soon as it has
// the reply (the seq leaves the in-progress set before the reply is on
// the wire).
func TestSeqReusedAfterItsReply(t *testing.T) {
	fake := &fakeJobs{pipelines: []string{"a"}}
	rc := dialRaw(t, startServer(t, NewServer(fake, nil, nil), "tcp://127.0.0.1:0"))
	for i := range 500 {
		if r := jsonCall(t, rc, 1, "jobs.List", `{}`); r.isError() {
			t.Fatalf("call %d: %q", i, r.body)
		}
		if r := jsonCall(t, rc, 1, "jobs.Nope", `{}`); !r.isError() {
			t.Fatalf("call %d: unknown method answered %q", i, r.body)
		}
	}
}
