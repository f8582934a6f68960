package rpc

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/roadrunner-server/goridge/v3/pkg/frame"
)

var update = flag.Bool("update", false, "rewrite rpc/testdata golden frames and vectors.json")

// goldenCase is one request a JSON-codec producer sends and the reply the
// server gives, in the order a client sends them on one connection.
type goldenCase struct {
	name   string
	method string
	body   string
	err    error // the fake manager fails with this
	check  func(t *testing.T, f *fakeJobs)
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{
			name:   "push",
			method: "jobs.Push",
			body: `{"job":{"job":"App\\Jobs\\SendMail","id":"0f8fad5b-d9cb-469f-a165-70867728950e",` +
				`"payload":"eyJ0byI6ImFAZXhhbXBsZS5jb20ifQ==",` +
				`"headers":{"x-tenant":{"value":["acme"]},"x-trace":{"value":["a","b"]}},` +
				`"options":{"priority":5,"pipeline":"emails","delay":30,"key":"customer-42"}}}`,
			check: func(t *testing.T, f *fakeJobs) {
				want := []consumer.Job{{
					ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Name: `App\Jobs\SendMail`, Pipeline: "emails",
					Payload:  []byte(`{"to":"a@example.com"}`),
					Headers:  map[string][]string{"x-tenant": {"acme"}, "x-trace": {"a", "b"}},
					Delay:    30 * time.Second,
					Priority: 5, Key: "customer-42",
				}}
				if len(f.pushed) != 1 || !reflect.DeepEqual(f.pushed[0], want) {
					t.Errorf("pushed %+v, want %+v", f.pushed, want)
				}
			},
		},
		{
			name:   "push_batch",
			method: "jobs.PushBatch",
			body: `{"jobs":[{"job":"App\\Jobs\\Resize","id":"id-1","payload":"aW1nLTE=",` +
				`"options":{"pipeline":"images","key":"album-7"}},` +
				`{"job":"App\\Jobs\\Resize","id":"id-2","payload":"aW1nLTI=",` +
				`"options":{"priority":1,"pipeline":"images","auto_ack":true}}]}`,
			check: func(t *testing.T, f *fakeJobs) {
				want := []consumer.Job{
					{ID: "id-1", Name: `App\Jobs\Resize`, Pipeline: "images", Payload: []byte("img-1"), Key: "album-7"},
					{ID: "id-2", Name: `App\Jobs\Resize`, Pipeline: "images", Payload: []byte("img-2"), Priority: 1, AutoAck: true},
				}
				if len(f.pushed) != 2 || !reflect.DeepEqual(f.pushed[1], want) {
					t.Errorf("pushed %+v, want second batch %+v", f.pushed, want)
				}
			},
		},
		{name: "stat", method: "jobs.Stat", body: `{}`},
		{
			name: "pause", method: "jobs.Pause", body: `{"pipelines":["emails","images"]}`,
			check: func(t *testing.T, f *fakeJobs) {
				if want := [][]string{{"emails", "images"}}; !reflect.DeepEqual(f.paused, want) {
					t.Errorf("paused %v, want %v", f.paused, want)
				}
			},
		},
		{name: "pause_error", method: "jobs.Pause", body: `{"pipelines":["nope"]}`, err: errBoom},
		{
			name: "resume", method: "jobs.Resume", body: `{"pipelines":["emails"]}`,
			check: func(t *testing.T, f *fakeJobs) {
				if want := [][]string{{"emails"}}; !reflect.DeepEqual(f.resumed, want) {
					t.Errorf("resumed %v, want %v", f.resumed, want)
				}
			},
		},
		{name: "list", method: "jobs.List", body: `{}`},
		{
			name: "declare", method: "jobs.Declare",
			body: `{"pipeline":{"driver":"memory","name":"reports","priority":"10","prefetch":"100"}}`,
			check: func(t *testing.T, f *fakeJobs) {
				want := []map[string]string{{"driver": "memory", "name": "reports", "priority": "10", "prefetch": "100"}}
				if !reflect.DeepEqual(f.declared, want) {
					t.Errorf("declared %v, want %v", f.declared, want)
				}
			},
		},
		{
			name: "destroy", method: "jobs.Destroy", body: `{"pipelines":["reports"]}`,
			check: func(t *testing.T, f *fakeJobs) {
				if want := [][]string{{"reports"}}; !reflect.DeepEqual(f.destroyed, want) {
					t.Errorf("destroyed %v, want %v", f.destroyed, want)
				}
			},
		},
	}
}

// goldenFake is the manager state behind the golden replies.
func goldenFake() *fakeJobs {
	return &fakeJobs{
		pipelines: []string{"emails", "images"},
		stats: []consumer.Stat{
			{
				Pipeline: "emails", Driver: "memory", Queue: "emails", Priority: 10,
				Ready: 3, Active: 2, Delayed: 1, Acked: 120, Retried: 4, Requeued: 1, Dead: 2, Consuming: true,
			},
			{
				Pipeline: "images", Driver: "amqp", Queue: "images", Priority: 5,
				Ready: -1, Delayed: -1, Error: "paused",
			},
		},
	}
}

type vectorFrame struct {
	File  string `json:"file"`
	Flags byte   `json:"flags"`
	Error bool   `json:"error"`
	Body  string `json:"body"`
}

type vector struct {
	Name    string      `json:"name"`
	Method  string      `json:"method"`
	Seq     uint32      `json:"seq"`
	Codec   string      `json:"codec"`
	Request vectorFrame `json:"request"`
	Reply   vectorFrame `json:"reply"`
}

type vectorFile struct {
	Description string   `json:"description"`
	Vectors     []vector `json:"vectors"`
}

const vectorsDescription = "Golden goridge RPC frames of the JSON codec, sent in this order on one " +
	"connection. Each request frame: 12-byte header (version 1, HL 5, flags 0x08 CodecJSON, payload " +
	"length, CRC32 of bytes 0..5), options [seq, len(method)] as uint32 LE, payload = method || body. " +
	"The reply echoes seq and method; flags 0x08 (0x48 with ERROR, the body is then the error text). " +
	"body is the exact JSON text after the method name. See rpc/doc.go."

// TestGoldenJSONFrames replays the golden JSON-codec requests over a real
// socket and checks the server's reply bytes. With -update it rewrites
// rpc/testdata instead.
func TestGoldenJSONFrames(t *testing.T) {
	fake := goldenFake()
	addr := startServer(t, NewServer(fake, fake, nil), "tcp://127.0.0.1:0")
	conn := dialRaw(t, addr)

	file := vectorFile{Description: vectorsDescription}
	for i, gc := range goldenCases() {
		seq := uint32(i + 1)
		req := rpcFrame(frame.CodecJSON, seq, gc.method, []byte(gc.body))
		fake.setErr(gc.err)
		rep := conn.roundTrip(req)
		fake.setErr(nil)

		r := parseReply(t, rep)
		if r.seq != seq || r.method != gc.method {
			t.Fatalf("%s: reply seq %d method %q, want %d %q", gc.name, r.seq, r.method, seq, gc.method)
		}
		if r.isError() != (gc.err != nil) {
			t.Fatalf("%s: reply error flag %v (body %q), want %v", gc.name, r.isError(), r.body, gc.err != nil)
		}
		if gc.err != nil && string(r.body) != gc.err.Error() {
			t.Errorf("%s: error text %q, want %q", gc.name, r.body, gc.err.Error())
		}
		if gc.check != nil {
			fake.mu.Lock()
			gc.check(t, fake)
			fake.mu.Unlock()
		}
		file.Vectors = append(file.Vectors, vector{
			Name: gc.name, Method: gc.method, Seq: seq, Codec: "json",
			Request: vectorFrame{File: gc.name + ".request.bin", Flags: frame.CodecJSON, Body: gc.body},
			Reply:   vectorFrame{File: gc.name + ".reply.bin", Flags: r.flags, Error: r.isError(), Body: string(r.body)},
		})
		compareGolden(t, gc.name+".request.bin", req)
		compareGolden(t, gc.name+".reply.bin", rep)
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(file); err != nil {
		t.Fatal(err)
	}
	compareGolden(t, "vectors.json", buf.Bytes())
}

func compareGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./rpc -run TestGoldenJSONFrames -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\n got: %q\nwant: %q", name, got, want)
	}
}
