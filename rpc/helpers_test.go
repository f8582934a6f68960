package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// fakeJobs implements Jobs and Workers and records what it was asked.
type fakeJobs struct {
	mu        sync.Mutex
	pushed    [][]consumer.Job
	paused    [][]string
	resumed   [][]string
	declared  []map[string]string
	destroyed [][]string
	resets    int

	pipelines []string
	stats     []consumer.Stat
	workers   []WorkerInfo
	err       error         // returned by every ctx method when set
	block     chan struct{} // when set, Push waits for it or ctx
}

func (f *fakeJobs) Push(ctx context.Context, jobs []consumer.Job) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.pushed = append(f.pushed, jobs)
	return nil
}

func (f *fakeJobs) Pause(_ context.Context, p []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.paused = append(f.paused, p)
	return nil
}

func (f *fakeJobs) Resume(_ context.Context, p []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.resumed = append(f.resumed, p)
	return nil
}

func (f *fakeJobs) List() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pipelines)
}

func (f *fakeJobs) Declare(_ context.Context, p map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.declared = append(f.declared, p)
	return nil
}

func (f *fakeJobs) Destroy(_ context.Context, p []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.destroyed = append(f.destroyed, p)
	return p, nil
}

func (f *fakeJobs) Stat(context.Context) ([]consumer.Stat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return slices.Clone(f.stats), nil
}

func (f *fakeJobs) Workers() []WorkerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.workers)
}

func (f *fakeJobs) Reset(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.resets++
	return nil
}

func (f *fakeJobs) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// startServer serves s on addr ("tcp://127.0.0.1:0" or a unix:// path)
// until the test ends, and returns the address to dial. Cleanup cancels the
// server and fails the test if Serve returned an error or did not return.
func startServer(t *testing.T, s *Server, addr string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := Listen(ctx, addr)
	if err != nil {
		cancel()
		t.Fatalf("Listen(%s): %v", addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeListener returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("ServeListener did not return after cancel")
		}
	})
	if ln.Addr().Network() == "unix" {
		return "unix://" + ln.Addr().String()
	}
	return "tcp://" + ln.Addr().String()
}

// rpcFrame builds a goridge RPC request frame: options [seq, len(method)],
// payload method‖body, the given codec flag.
func rpcFrame(flags byte, seq uint32, method string, body []byte) []byte {
	fr := frame.NewFrame()
	fr.WriteVersion(fr.Header(), frame.Version1)
	fr.WriteFlags(fr.Header(), flags)
	fr.WriteOptions(fr.HeaderPtr(), seq, uint32(len(method)))
	payload := append([]byte(method), body...)
	fr.WritePayloadLen(fr.Header(), uint32(len(payload)))
	fr.WritePayload(payload)
	fr.WriteCRC(fr.Header())
	return fr.Bytes()
}

// rawConn is a test client that writes frames and reads whole reply frames
// as bytes.
type rawConn struct {
	t    *testing.T
	conn net.Conn
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	network, address, err := ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawConn{t: t, conn: conn}
}

// roundTrip writes req and returns the complete reply frame.
func (r *rawConn) roundTrip(req []byte) []byte {
	r.t.Helper()
	if err := r.conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.conn.Write(req); err != nil {
		r.t.Fatalf("write: %v", err)
	}
	out, err := readFrameBytes(r.conn)
	if err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	return out
}

func readFrameBytes(rd io.Reader) ([]byte, error) {
	hdr := make([]byte, 12)
	if _, err := io.ReadFull(rd, hdr); err != nil {
		return nil, err
	}
	hl := int(hdr[0] & 0x0F)
	if hl < 3 {
		return nil, fmt.Errorf("bad header length %d", hl)
	}
	rest := make([]byte, (hl-3)*4+int(binary.LittleEndian.Uint32(hdr[2:6])))
	if _, err := io.ReadFull(rd, rest); err != nil {
		return nil, err
	}
	return append(hdr, rest...), nil
}

// reply is a decoded RPC reply frame.
type reply struct {
	flags  byte
	seq    uint32
	method string
	body   []byte
}

func (r reply) isError() bool { return r.flags&frame.ERROR != 0 }

func parseReply(t *testing.T, b []byte) reply {
	t.Helper()
	fr := frame.ReadFrame(b)
	if !fr.VerifyCRC(fr.Header()) {
		t.Fatalf("reply CRC mismatch: % x", b)
	}
	opts := fr.ReadOptions(fr.Header())
	if len(opts) != 2 {
		t.Fatalf("reply has %d options, want 2", len(opts))
	}
	p := fr.Payload()
	if int(opts[1]) > len(p) {
		t.Fatalf("method length %d > payload %d", opts[1], len(p))
	}
	return reply{flags: fr.ReadFlags(), seq: opts[0], method: string(p[:opts[1]]), body: bytes.Clone(p[opts[1]:])}
}

var errBoom = errors.New("pipeline \"nope\" does not exist")
