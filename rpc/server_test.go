package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"google.golang.org/protobuf/encoding/protowire"
)

// socketDir returns a short temporary directory for unix sockets (the
// socket path limit is about 108 bytes, t.TempDir paths can be longer).
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pvrpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// listenAddrs are the two transports every method is tested over.
func listenAddrs(t *testing.T) map[string]string {
	return map[string]string{
		"tcp":  "tcp://127.0.0.1:0",
		"unix": "unix://" + filepath.Join(socketDir(t), "rpc.sock"),
	}
}

func dialClient(t *testing.T, addr string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestProtoClientEveryMethod(t *testing.T) {
	for network, listen := range listenAddrs(t) {
		t.Run(network, func(t *testing.T) {
			fake := goldenFake()
			created := time.Unix(1763780000, 123).UTC()
			fake.workers = []WorkerInfo{
				{Pid: 4242, State: "working", Jobs: 17, RSS: 31457280, Created: created, CurrentJob: "job-1"},
				{Pid: 4243, State: "ready"},
			}
			c := dialClient(t, startServer(t, NewServer(fake, fake, nil), listen))
			ctx := testCtx(t)

			job := consumer.Job{
				ID: "id-1", Name: "App\\Jobs\\Mail", Pipeline: "emails", Payload: []byte{0, 1, 2, 0xff},
				Headers: map[string][]string{"a": {"1", "2"}}, Delay: 1500 * time.Millisecond,
				Priority: 3, Key: "k", AutoAck: true,
			}
			if err := c.Push(ctx, job); err != nil {
				t.Fatalf("Push: %v", err)
			}
			batch := []consumer.Job{{ID: "b1", Pipeline: "images"}, {ID: "b2", Pipeline: "images", Key: "x"}}
			if err := c.PushBatch(ctx, batch); err != nil {
				t.Fatalf("PushBatch: %v", err)
			}
			if err := c.Pause(ctx, "emails", "images"); err != nil {
				t.Fatalf("Pause: %v", err)
			}
			if err := c.Resume(ctx, "emails"); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			list, err := c.List(ctx)
			if err != nil || !reflect.DeepEqual(list, []string{"emails", "images"}) {
				t.Fatalf("List = %v, %v", list, err)
			}
			decl := map[string]string{"driver": "memory", "name": "reports"}
			if err := c.Declare(ctx, decl); err != nil {
				t.Fatalf("Declare: %v", err)
			}
			destroyed, err := c.Destroy(ctx, "reports")
			if err != nil || !reflect.DeepEqual(destroyed, []string{"reports"}) {
				t.Fatalf("Destroy = %v, %v", destroyed, err)
			}
			stats, err := c.Stat(ctx)
			if err != nil || !reflect.DeepEqual(stats, fake.stats) {
				t.Fatalf("Stat = %+v, %v; want %+v", stats, err, fake.stats)
			}
			workers, err := c.Workers(ctx)
			if err != nil {
				t.Fatalf("Workers: %v", err)
			}
			if len(workers) != 2 || workers[0].Pid != 4242 || workers[0].State != "working" ||
				workers[0].Jobs != 17 || workers[0].RSS != 31457280 || !workers[0].Created.Equal(created) ||
				workers[0].CurrentJob != "job-1" || workers[1].Pid != 4243 || !workers[1].Created.IsZero() {
				t.Fatalf("Workers = %+v", workers)
			}
			if err := c.Reset(ctx); err != nil {
				t.Fatalf("Reset: %v", err)
			}

			fake.mu.Lock()
			defer fake.mu.Unlock()
			wantJob := job
			wantJob.Delay = 2 * time.Second // rounded up to whole seconds on the wire
			if want := [][]consumer.Job{{wantJob}, batch}; !reflect.DeepEqual(fake.pushed, want) {
				t.Errorf("pushed %+v, want %+v", fake.pushed, want)
			}
			if want := [][]string{{"emails", "images"}}; !reflect.DeepEqual(fake.paused, want) {
				t.Errorf("paused %v", fake.paused)
			}
			if want := [][]string{{"emails"}}; !reflect.DeepEqual(fake.resumed, want) {
				t.Errorf("resumed %v", fake.resumed)
			}
			if want := []map[string]string{decl}; !reflect.DeepEqual(fake.declared, want) {
				t.Errorf("declared %v", fake.declared)
			}
			if fake.resets != 1 {
				t.Errorf("resets = %d, want 1", fake.resets)
			}
		})
	}
}

// jsonCall sends one JSON-codec request and returns the decoded reply.
func jsonCall(t *testing.T, rc *rawConn, seq uint32, method, body string) reply {
	t.Helper()
	r := parseReply(t, rc.roundTrip(rpcFrame(frame.CodecJSON, seq, method, []byte(body))))
	if r.seq != seq || r.method != method {
		t.Fatalf("%s: reply seq %d method %q", method, r.seq, r.method)
	}
	if r.flags&frame.CodecJSON == 0 {
		t.Fatalf("%s: reply flags %#x, want the JSON codec", method, r.flags)
	}
	return r
}

func TestJSONCodecEveryMethod(t *testing.T) {
	for network, listen := range listenAddrs(t) {
		t.Run(network, func(t *testing.T) {
			fake := goldenFake()
			fake.workers = []WorkerInfo{{Pid: 7, State: "ready", Jobs: 3, RSS: 1024, Created: time.Unix(0, 99)}}
			rc := dialRaw(t, startServer(t, NewServer(fake, fake, nil), listen))

			// The jobs.* methods, byte for byte as in the golden files.
			for i, gc := range goldenCases() {
				fake.setErr(gc.err)
				r := jsonCall(t, rc, uint32(i+1), gc.method, gc.body)
				fake.setErr(nil)
				want, err := os.ReadFile(filepath.Join("testdata", gc.name+".reply.bin"))
				if err != nil {
					t.Fatal(err)
				}
				if got := parseReply(t, want); string(got.body) != string(r.body) || got.flags != r.flags {
					t.Errorf("%s: reply %#x %q, golden %#x %q", gc.name, r.flags, r.body, got.flags, got.body)
				}
			}

			r := jsonCall(t, rc, 100, "informer.Workers", `{"plugin":"jobs"}`)
			var wl struct {
				Workers []map[string]any `json:"workers"`
			}
			if r.isError() || json.Unmarshal(r.body, &wl) != nil {
				t.Fatalf("informer.Workers reply %q", r.body)
			}
			want := map[string]any{"pid": 7.0, "status": "ready", "num_execs": 3.0, "created": 99.0, "memory_usage": 1024.0}
			if len(wl.Workers) != 1 || !reflect.DeepEqual(wl.Workers[0], want) {
				t.Errorf("informer.Workers = %s", r.body)
			}

			r = jsonCall(t, rc, 101, "resetter.Reset", `{"plugin":"jobs"}`)
			if r.isError() || string(r.body) != `{"ok":true}` {
				t.Errorf("resetter.Reset reply %q (error %v)", r.body, r.isError())
			}
			r = jsonCall(t, rc, 102, "resetter.Reset", `{"plugin":"http"}`)
			if !r.isError() || !strings.Contains(string(r.body), ErrUnknownPlugin.Error()) {
				t.Errorf("resetter.Reset http reply %q (error %v)", r.body, r.isError())
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if fake.resets != 1 {
				t.Errorf("resets = %d, want 1", fake.resets)
			}
		})
	}
}

// TestRoadRunnerProtoBytes sends a Push whose protobuf body is built field
// by field with RoadRunner's jobs.v1 numbers, as RoadRunner's PHP client
// encodes it, and checks what reaches the manager.
func TestRoadRunnerProtoBytes(t *testing.T) {
	fake := &fakeJobs{}
	rc := dialRaw(t, startServer(t, NewServer(fake, nil, nil), "tcp://127.0.0.1:0"))

	var hv []byte // HeaderValue{value: ["v1","v2"]}
	hv = protowire.AppendTag(hv, 1, protowire.BytesType)
	hv = protowire.AppendString(hv, "v1")
	hv = protowire.AppendTag(hv, 1, protowire.BytesType)
	hv = protowire.AppendString(hv, "v2")
	var entry []byte // map entry {key: "h", value: hv}
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "h")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, hv)
	var opts []byte
	opts = protowire.AppendTag(opts, 1, protowire.VarintType) // priority
	opts = protowire.AppendVarint(opts, 7)
	opts = protowire.AppendTag(opts, 2, protowire.BytesType) // pipeline
	opts = protowire.AppendString(opts, "default")
	opts = protowire.AppendTag(opts, 3, protowire.VarintType) // delay
	opts = protowire.AppendVarint(opts, 4)
	opts = protowire.AppendTag(opts, 6, protowire.VarintType) // auto_ack
	opts = protowire.AppendVarint(opts, 1)
	opts = protowire.AppendTag(opts, 7, protowire.BytesType) // topic (ignored)
	opts = protowire.AppendString(opts, "t")
	var job []byte
	job = protowire.AppendTag(job, 1, protowire.BytesType)
	job = protowire.AppendString(job, "App\\Job")
	job = protowire.AppendTag(job, 2, protowire.BytesType)
	job = protowire.AppendString(job, "rr-id")
	job = protowire.AppendTag(job, 3, protowire.BytesType)
	job = protowire.AppendBytes(job, []byte("payload"))
	job = protowire.AppendTag(job, 4, protowire.BytesType)
	job = protowire.AppendBytes(job, entry)
	job = protowire.AppendTag(job, 5, protowire.BytesType)
	job = protowire.AppendBytes(job, opts)
	var req []byte // PushRequest{job}
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, job)

	r := parseReply(t, rc.roundTrip(rpcFrame(frame.CodecProto, 1, "jobs.Push", req)))
	if r.isError() || r.flags&frame.CodecProto == 0 || len(r.body) != 0 {
		t.Fatalf("reply flags %#x body %q", r.flags, r.body)
	}
	want := []consumer.Job{{
		ID: "rr-id", Name: "App\\Job", Pipeline: "default", Payload: []byte("payload"),
		Headers: map[string][]string{"h": {"v1", "v2"}}, Delay: 4 * time.Second, Priority: 7, AutoAck: true,
	}}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.pushed) != 1 || !reflect.DeepEqual(fake.pushed[0], want) {
		t.Fatalf("pushed %+v, want %+v", fake.pushed, want)
	}
}

func TestManagerErrorsReachTheClient(t *testing.T) {
	fake := &fakeJobs{err: errBoom}
	c := dialClient(t, startServer(t, NewServer(fake, fake, nil), "tcp://127.0.0.1:0"))
	ctx := testCtx(t)

	calls := map[string]func() error{
		"jobs.Push":      func() error { return c.Push(ctx, consumer.Job{ID: "x", Pipeline: "nope"}) },
		"jobs.PushBatch": func() error { return c.PushBatch(ctx, []consumer.Job{{ID: "x", Pipeline: "nope"}}) },
		"jobs.Pause":     func() error { return c.Pause(ctx, "nope") },
		"jobs.Resume":    func() error { return c.Resume(ctx, "nope") },
		"jobs.Declare":   func() error { return c.Declare(ctx, map[string]string{"name": "nope"}) },
		"jobs.Destroy":   func() error { _, err := c.Destroy(ctx, "nope"); return err },
		"jobs.Stat":      func() error { _, err := c.Stat(ctx); return err },
		"resetter.Reset": func() error { return c.Reset(ctx) },
	}
	for method, call := range calls {
		err := call()
		var se *ServerError
		if !errors.As(err, &se) || se.Method != method || se.Message != errBoom.Error() {
			t.Errorf("%s: err = %v, want ServerError with %q", method, err, errBoom)
		}
	}
	if err := c.Pause(ctx, "nope"); err.Error() != "jobs.Pause: "+errBoom.Error() {
		t.Errorf("error text %q", err)
	}
	// The connection stays usable after server errors.
	fake.setErr(nil)
	if err := c.Pause(ctx, "emails"); err != nil {
		t.Errorf("Pause after errors: %v", err)
	}
}

func TestPushValidation(t *testing.T) {
	fake := &fakeJobs{}
	c := dialClient(t, startServer(t, NewServer(fake, nil, nil), "tcp://127.0.0.1:0"))
	ctx := testCtx(t)

	var se *ServerError
	if err := c.Push(ctx, consumer.Job{ID: "a"}); !errors.As(err, &se) || !strings.Contains(se.Message, ErrNoPipeline.Error()) {
		t.Errorf("Push without pipeline: %v", err)
	}
	err := c.PushBatch(ctx, []consumer.Job{{ID: "a", Pipeline: "p"}, {ID: "b"}})
	if !errors.As(err, &se) || !strings.Contains(se.Message, "job 1: ") {
		t.Errorf("PushBatch with an invalid job: %v", err)
	}
	if err := c.PushBatch(ctx, nil); err != nil {
		t.Errorf("empty PushBatch: %v", err)
	}
	if _, err := c.Workers(ctx); !errors.As(err, &se) || se.Message != ErrNoWorkers.Error() {
		t.Errorf("Workers without a pool: %v", err)
	}
	if err := c.Push(ctx, consumer.Job{Pipeline: "p"}); err != nil {
		t.Fatalf("Push without id: %v", err)
	}

	rc := dialRaw(t, "tcp://"+c.conn.RemoteAddr().String())
	r := jsonCall(t, rc, 1, "jobs.Push", `{"job":{"id":"n","options":{"pipeline":"p","delay":-1}}}`)
	if !r.isError() || !strings.Contains(string(r.body), ErrNegativeDelay.Error()) {
		t.Errorf("negative delay reply %q", r.body)
	}
	if r := jsonCall(t, rc, 3, "jobs.Push", `{"job":{"options":{"pipeline":"p","delay":9300000000000}}}`); !r.isError() ||
		!strings.Contains(string(r.body), ErrDelayTooLong.Error()) {
		t.Errorf("huge delay reply %q", r.body)
	}
	if r := jsonCall(t, rc, 2, "jobs.Push", `{}`); !r.isError() || string(r.body) != ErrNoJob.Error() {
		t.Errorf("push without job reply %q", r.body)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.pushed) != 1 {
		t.Fatalf("pushed %d batches, want only the valid push", len(fake.pushed))
	}
	if _, err := uuid.Parse(fake.pushed[0][0].ID); err != nil {
		t.Errorf("generated id %q is not a UUID: %v", fake.pushed[0][0].ID, err)
	}
}

func TestDialNotRunning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tcp://" + ln.Addr().String()
	_ = ln.Close()

	_, err = Dial(testCtx(t), addr)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial = %v, want ErrNotRunning", err)
	}
	if want := "no supervisor is listening on " + addr + ": connection refused"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}

	sock := "unix://" + filepath.Join(socketDir(t), "missing.sock")
	_, err = Dial(testCtx(t), sock)
	if !errors.Is(err, ErrNotRunning) || !strings.HasPrefix(err.Error(), "no supervisor is listening on "+sock+": ") {
		t.Errorf("Dial(missing unix socket) = %v", err)
	}

	for _, bad := range []string{"127.0.0.1:6001", "http://x:1", "tcp://nohost", "unix://"} {
		if _, err := Dial(testCtx(t), bad); !errors.Is(err, ErrBadAddress) {
			t.Errorf("Dial(%q) = %v, want ErrBadAddress", bad, err)
		}
	}
}

func TestUnixSocketFile(t *testing.T) {
	dir := socketDir(t)
	path := filepath.Join(dir, "rpc.sock")

	// A stale socket file (nobody accepts) is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	fake := &fakeJobs{pipelines: []string{"a"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- NewServer(fake, nil, nil).Serve(ctx, "unix://"+path) }()

	var c *Client
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err = Dial(ctx, "unix://"+path)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never came up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.Close()
	if got, err := c.List(ctx); err != nil || len(got) != 1 {
		t.Fatalf("List = %v, %v", got, err)
	}

	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Type() != fs.ModeSocket || info.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", info.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the socket", len(entries))
	}

	// A second server on the same live socket is refused.
	if err := NewServer(fake, nil, nil).Serve(ctx, "unix://"+path); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("second Serve = %v, want ErrAddressInUse", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after Serve returned: %v", err)
	}

	// A path that is not a socket is never removed.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(context.Background(), "unix://"+plain); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("Listen on a regular file = %v, want ErrAddressInUse", err)
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
}

func TestClientHonoursCtx(t *testing.T) {
	fake := &fakeJobs{block: make(chan struct{})}
	defer close(fake.block)
	addr := startServer(t, NewServer(fake, nil, nil), "tcp://127.0.0.1:0")
	c := dialClient(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Push(ctx, consumer.Job{ID: "a", Pipeline: "p"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Push = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Push took %v after a 100ms deadline", d)
	}
	if err := c.Pause(testCtx(t), "p"); !errors.Is(err, ErrClientClosed) {
		t.Errorf("call after an interrupted call = %v, want ErrClientClosed", err)
	}

	// Cancellation without a deadline interrupts too.
	c2 := dialClient(t, addr)
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	if err := c2.Push(ctx2, consumer.Job{ID: "b", Pipeline: "p"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Push = %v, want Canceled", err)
	}
	for range 2 {
		if err := c2.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if _, err := c2.List(testCtx(t)); !errors.Is(err, ErrClientClosed) {
		t.Errorf("List after Close = %v, want ErrClientClosed", err)
	}
}

func TestServeShutdown(t *testing.T) {
	fake := &fakeJobs{block: make(chan struct{})} // never released: shutdown must cancel it
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := Listen(ctx, "tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tcp://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- NewServer(fake, nil, nil).ServeListener(ctx, ln) }()

	idle := dialClient(t, addr)
	busy := dialClient(t, addr)
	pushed := make(chan error, 1)
	go func() { pushed <- busy.Push(testCtx(t), consumer.Job{ID: "a", Pipeline: "p"}) }()
	if _, err := idle.List(testCtx(t)); err != nil { // the server is up and serving
		t.Fatal(err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not return after cancel with a call in progress")
	}
	select {
	case err := <-pushed:
		if err == nil {
			t.Error("blocked Push succeeded after shutdown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Push never returned")
	}
	if _, err := idle.List(testCtx(t)); err == nil {
		t.Error("idle connection still served after shutdown")
	}
	if _, err := Dial(testCtx(t), addr); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Dial after shutdown = %v, want ErrNotRunning", err)
	}
}

func TestMalformedFrameDoesNotCrash(t *testing.T) {
	fake := &fakeJobs{pipelines: []string{"a"}}
	addr := startServer(t, NewServer(fake, nil, nil), "tcp://127.0.0.1:0")

	// Method length larger than the payload.
	rc := dialRaw(t, addr)
	bad := frame.NewFrame()
	bad.WriteVersion(bad.Header(), frame.Version1)
	bad.WriteFlags(bad.Header(), frame.CodecJSON)
	bad.WriteOptions(bad.HeaderPtr(), 1, 500)
	bad.WritePayloadLen(bad.Header(), 2)
	bad.WritePayload([]byte("{}"))
	bad.WriteCRC(bad.Header())
	if _, err := rc.conn.Write(bad.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := readFrameBytes(rc.conn); err == nil {
		t.Error("server answered a malformed frame instead of closing the connection")
	}

	// Unknown method and undecodable body get error replies.
	rc2 := dialRaw(t, addr)
	if r := jsonCall(t, rc2, 1, "jobs.Nope", `{}`); !r.isError() {
		t.Errorf("unknown method reply %q", r.body)
	}
	if r := jsonCall(t, rc2, 2, "jobs.Pause", `{"pipelines":5}`); !r.isError() {
		t.Errorf("bad body reply %q", r.body)
	}

	// Other connections are unaffected.
	if got, err := dialClient(t, addr).List(testCtx(t)); err != nil || len(got) != 1 {
		t.Errorf("List after malformed frames = %v, %v", got, err)
	}
}

func TestConcurrentClients(t *testing.T) {
	fake := &fakeJobs{}
	addr := startServer(t, NewServer(fake, nil, nil), "tcp://127.0.0.1:0")
	shared := dialClient(t, addr)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 4 {
		own := dialClient(t, addr)
		wg.Go(func() {
			for j := range 5 {
				job := consumer.Job{ID: uuid.NewString(), Pipeline: "p", Payload: []byte{byte(i), byte(j)}}
				errs <- own.Push(testCtx(t), job)
				errs <- shared.Push(testCtx(t), job)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.pushed) != 40 {
		t.Errorf("pushed %d, want 40", len(fake.pushed))
	}
}
