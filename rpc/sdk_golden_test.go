package rpc

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	frm "github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/retry"
	"github.com/pipevisor/pipevisor/rpc/jobsv1"
	"google.golang.org/protobuf/proto"
)

// sdkCase is one entry of testdata/sdk/declare.json: what a version of
// RoadRunner's PHP SDK sends as DeclareRequest.pipeline, keys in order.
type sdkCase struct {
	Name       string      `json:"name"`
	SDK        string      `json:"sdk"`
	CreateInfo string      `json:"create_info"`
	Pipeline   [][2]string `json:"pipeline"`
}

func loadSDKCases(t *testing.T) []sdkCase {
	t.Helper()
	data, err := os.ReadFile("testdata/sdk/declare.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []sdkCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f.Cases
}

// value returns the value of key in the case, or "".
func (c sdkCase) value(key string) string {
	for _, kv := range c.Pipeline {
		if kv[0] == key {
			return kv[1]
		}
	}
	return ""
}

// declareProto is DeclareRequest as the PHP protobuf runtime writes it:
// one map entry (key, value) per key, in the order the SDK set them.
func declareProto(pairs [][2]string) []byte {
	var b []byte
	for _, kv := range pairs {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, kv[0])
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendString(e, kv[1])
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

// declareJSON is the JSON-codec body of the same request, keys in order,
// as Pipevisor's PHP client writes it.
func declareJSON(pairs [][2]string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"pipeline":{`)
	for i, kv := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(kv[0]))
		b.WriteByte(':')
		b.Write(jsonString(kv[1]))
	}
	b.WriteString(`}}`)
	return b.Bytes()
}

func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// sdkFrame is one request/reply pair of testdata/sdk/frames.json.
type sdkFrame struct {
	Name    string      `json:"name"`
	Method  string      `json:"method"`
	Codec   string      `json:"codec"`
	Seq     uint32      `json:"seq"`
	Request sdkFrameOne `json:"request"`
	Reply   sdkFrameOne `json:"reply"`
}

// sdkFrameOne is one frame: Body is the JSON text (json codec) or the hex
// of the protobuf bytes (proto codec); Frame is the hex of the whole frame.
type sdkFrameOne struct {
	Flags byte   `json:"flags"`
	Error bool   `json:"error"`
	Body  string `json:"body"`
	Frame string `json:"frame"`
}

const sdkFramesDescription = "Golden goridge RPC frames of what RoadRunner's PHP SDK sends (protobuf codec, " +
	"flags 0x80, as spiral/roadrunner-jobs does) and of the same requests in the JSON codec (flags 0x08, " +
	"as Pipevisor's PHP client sends them), with the server's replies: each *CreateInfo of declare.json " +
	"(jobs.Declare), then jobs.Stat with a memory pipeline holding a backlog of 6 (5 queued, 1 running) and " +
	"an amqp pipeline holding 3 ready and 2 delayed messages. The frames of one codec are sent in order on " +
	"one connection (seq from 1). body: JSON text, or hex of the protobuf bytes; frame: hex of the whole frame."

// amqpURL is the RabbitMQ the amqp parts of these tests use.
func amqpURL() string {
	if a := os.Getenv("SUPERVISOR_AMQP_URL"); a != "" {
		return a
	}
	return amqpjobs.DefaultAddr
}

// amqpAdmin runs fn on a channel of a fresh connection to RabbitMQ. When
// the broker is unreachable the test is skipped, or fails in CI.
func amqpAdmin(t *testing.T, fn func(ch *amqp.Channel)) {
	t.Helper()
	c, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("RabbitMQ unreachable: %v", err)
		}
		t.Skipf("RabbitMQ unreachable: %v (set CI to make this fail)", err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	fn(ch)
}

// deleteIdle deletes the queues that exist, are empty and unused, on
// their own channels (a failed delete closes its channel).
func deleteIdle(t *testing.T, queues ...string) {
	t.Helper()
	amqpAdmin(t, func(*amqp.Channel) {}) // skips or fails without a broker
	for _, q := range queues {
		c, err := amqp.Dial(amqpURL())
		if err != nil {
			t.Fatal(err)
		}
		if ch, err := c.Channel(); err == nil {
			_, _ = ch.QueueDelete(q, true, true, false)
		}
		_ = c.Close()
	}
}

// busyExec holds every job until release is closed, counting the started ones.
type busyExec struct {
	mu      sync.Mutex
	started int
	release chan struct{}
}

func (x *busyExec) Exec(ctx context.Context, _ frm.Payload) (frm.Payload, error) {
	x.mu.Lock()
	x.started++
	x.mu.Unlock()
	select {
	case <-x.release:
	case <-ctx.Done():
		return frm.Payload{}, context.Cause(ctx)
	}
	return frm.Payload{}, nil
}

func (x *busyExec) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.started
}

// sdkStatQueue is the amqp queue of the stat scenario.
const sdkStatQueue = "pipevisor.sdk.stat"

// sdkServer runs a real jobs.Manager behind an RPC server: memory and amqp
// pipelines get their real drivers, sqs and kafka ones (which need other
// brokers) a memory queue, and the Factory records every configuration.
type sdkServer struct {
	m    *jobs.Manager
	exec *busyExec
	addr string

	mu       sync.Mutex
	declared map[string]config.Pipeline
}

func startSDKServer(t *testing.T) *sdkServer {
	t.Helper()
	delayQ := "pipevisor.delay.30000." + amqpjobs.DefaultExchange + "." + sdkStatQueue
	amqpAdmin(t, func(ch *amqp.Channel) { _, _ = ch.QueueDelete(sdkStatQueue, false, false, false) })
	amqpAdmin(t, func(ch *amqp.Channel) { _, _ = ch.QueueDelete(delayQ, false, false, false) })
	s := &sdkServer{exec: &busyExec{release: make(chan struct{})}, declared: map[string]config.Pipeline{}}
	mem := memjobs.Config{}
	mem.Defaults()
	s.m = jobs.New(jobs.Config{
		Factory: func(ctx context.Context, p config.Pipeline) (jobs.Driver, error) {
			s.mu.Lock()
			s.declared[p.Name] = p
			s.mu.Unlock()
			switch p.Driver {
			case config.DriverMemory:
				return memjobs.New(p.Name, *p.Memory, nil), nil
			case config.DriverAMQP:
				return amqpjobs.New(ctx, p.Name, amqpjobs.Global{Addr: amqpURL()}, *p.AMQP, p.DeadLetter, nil)
			default:
				return memjobs.New(p.Name, mem, nil), nil
			}
		},
		Executor: exectest.Func(s.exec.Exec),
		Pipelines: map[string]config.Pipeline{
			"sdk-busy": {Driver: config.DriverMemory, Priority: 10, Concurrency: 1, Retry: retry.Defaults(), Memory: &mem},
			"sdk-amqp": {Driver: config.DriverAMQP, Priority: 10, Concurrency: 1, Retry: retry.Defaults(),
				AMQP: &amqpjobs.Config{Queue: sdkStatQueue, Prefetch: 10, Priority: 10, RedialTimeout: time.Minute,
					Exchange: amqpjobs.DefaultExchange, ExchangeType: amqpjobs.DefaultExchangeType, ConfirmTimeout: 30 * time.Second}},
		},
		DefaultConcurrency: 1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.m.Start(ctx, []string{"sdk-busy"}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		close(s.exec.release)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.m.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		amqpAdmin(t, func(ch *amqp.Channel) { _, _ = ch.QueueDelete(sdkStatQueue, false, false, false) })
		amqpAdmin(t, func(ch *amqp.Channel) { _, _ = ch.QueueDelete(delayQ, false, false, false) })
	})
	s.addr = startServer(t, NewServer(s.m, &fakeJobs{}, nil), "tcp://127.0.0.1:0")
	return s
}

// fillStatScenario pushes the backlog the golden Stat reply shows: 6 jobs
// to the memory pipeline whose one slot is busy, 3 ready and 2 delayed
// jobs to the paused amqp pipeline.
func (s *sdkServer) fillStatScenario(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, rabbit []consumer.Job
	for i := range 6 {
		busy = append(busy, consumer.Job{ID: fmt.Sprintf("busy-%d", i), Name: "Busy", Pipeline: "sdk-busy", Payload: []byte("x")})
	}
	for i := range 5 {
		j := consumer.Job{ID: fmt.Sprintf("rabbit-%d", i), Name: "Rabbit", Pipeline: "sdk-amqp", Payload: []byte("x")}
		if i >= 3 {
			j.Delay = 30 * time.Second
		}
		rabbit = append(rabbit, j)
	}
	if err := s.m.Push(ctx, busy); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Push(ctx, rabbit); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, err := s.m.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.exec.count() == 1 && len(st) == 2 && st[1].Active == 1 && st[1].Ready == 5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not in place: %+v (started %d)", st, s.exec.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sdkAMQPQueues are the queues the amqp cases of declare.json declare.
func sdkAMQPQueues(cases []sdkCase) []string {
	var out []string
	for _, c := range cases {
		if c.value("driver") == "amqp" {
			q := c.value("queue")
			if !slices.Contains(out, q) {
				out = append(out, q)
			}
		}
	}
	return out
}

// TestSDKGoldenFrames sends what RoadRunner's PHP SDK sends for every
// *CreateInfo of every SDK version (protobuf codec), and the same requests
// in the JSON codec, to a server with the real jobs manager, checks that
// each pipeline is declared with the meaning RoadRunner gives its keys,
// then reads jobs.Stat with a backlog on memory and RabbitMQ. Request and
// reply bytes are compared with testdata/sdk/frames.json (-update rewrites
// it).
func TestSDKGoldenFrames(t *testing.T) {
	cases := loadSDKCases(t)
	queues := sdkAMQPQueues(cases)
	deleteIdle(t, queues...)
	t.Cleanup(func() { deleteIdle(t, queues...) })

	var got []sdkFrame
	for _, codec := range []struct {
		name  string
		flags byte
	}{{"proto", frame.CodecProto}, {"json", frame.CodecJSON}} {
		s := startSDKServer(t)
		conn := dialRaw(t, s.addr)
		seq := uint32(0)
		send := func(name, method string, body []byte) sdkFrame {
			seq++
			req := rpcFrame(codec.flags, seq, method, body)
			rep := conn.roundTrip(req)
			r := parseReply(t, rep)
			if r.seq != seq || r.method != method {
				t.Fatalf("%s/%s: reply seq %d method %q", codec.name, name, r.seq, r.method)
			}
			if r.isError() {
				t.Fatalf("%s/%s: error reply %q", codec.name, name, r.body)
			}
			f := sdkFrame{Name: name, Method: method, Codec: codec.name, Seq: seq,
				Request: sdkFrameOne{Flags: codec.flags, Body: encodeBody(codec.name, body), Frame: hex.EncodeToString(req)},
				Reply:   sdkFrameOne{Flags: r.flags, Body: encodeBody(codec.name, r.body), Frame: hex.EncodeToString(rep)}}
			got = append(got, f)
			return f
		}
		for _, c := range cases {
			body := declareProto(c.Pipeline)
			if codec.name == "json" {
				body = declareJSON(c.Pipeline)
			}
			send(c.Name, "jobs.Declare", body)
			name := c.value("name")
			if name == "" {
				name = c.value("queue")
			}
			s.mu.Lock()
			p, ok := s.declared[name]
			s.mu.Unlock()
			if !ok || p.Driver != c.value("driver") {
				t.Fatalf("%s/%s: declared %+v", codec.name, c.Name, p)
			}
			checkSDKDeclared(t, c, p)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := s.m.Destroy(ctx, []string{name}); err != nil {
				t.Fatalf("%s/%s: Destroy: %v", codec.name, c.Name, err)
			}
			cancel()
		}
		deleteIdle(t, queues...)

		s.fillStatScenario(t)
		statBody := []byte{} // the SDK's Stat request: '' in the protobuf codec
		if codec.name == "json" {
			statBody = []byte(`{}`)
		}
		f := send("stat", "jobs.Stat", statBody)
		checkSDKStat(t, codec.name, f)
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		Description string     `json:"description"`
		Frames      []sdkFrame `json:"frames"`
	}{sdkFramesDescription, got}); err != nil {
		t.Fatal(err)
	}
	compareGolden(t, "sdk/frames.json", buf.Bytes())
}

func encodeBody(codec string, body []byte) string {
	if codec == "proto" {
		return hex.EncodeToString(body)
	}
	return string(body)
}

// checkSDKDeclared checks a few keys of each case arrived with their
// meaning (config's tests check every key).
func checkSDKDeclared(t *testing.T, c sdkCase, p config.Pipeline) {
	t.Helper()
	switch p.Driver {
	case config.DriverMemory:
		if fmt.Sprint(p.Memory.Prefetch) != c.value("prefetch") {
			t.Errorf("%s: memory %+v", c.Name, p.Memory)
		}
	case config.DriverAMQP:
		if p.AMQP.Queue != c.value("queue") || fmt.Sprint(p.AMQP.Prefetch) != c.value("prefetch") {
			t.Errorf("%s: amqp %+v", c.Name, p.AMQP)
		}
	case config.DriverSQS:
		if p.SQS.Queue != c.value("queue") {
			t.Errorf("%s: sqs %+v", c.Name, p.SQS)
		}
	case config.DriverKafka:
		if !p.Kafka.Consumes() {
			t.Errorf("%s: kafka pipeline does not consume: %+v", c.Name, p.Kafka)
		}
	}
	if want := c.value("priority"); fmt.Sprint(p.Priority) != want {
		t.Errorf("%s: priority %d, want %s", c.Name, p.Priority, want)
	}
}

// checkSDKStat checks the Stat reply as the SDK reads it: active is
// RoadRunner's backlog; Pipevisor's numbers are in queued, running and
// waiting_delay.
func checkSDKStat(t *testing.T, codec string, f sdkFrame) {
	t.Helper()
	var stats jobsv1.Stats
	if codec == "proto" {
		b, err := hex.DecodeString(f.Reply.Body)
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(b, &stats); err != nil {
			t.Fatal(err)
		}
	} else if err := json.Unmarshal([]byte(f.Reply.Body), &stats); err != nil {
		t.Fatal(err)
	}
	st := stats.GetStats()
	if len(st) != 2 {
		t.Fatalf("%s: %d stats: %v", codec, len(st), f.Reply.Body)
	}
	a, m := st[0], st[1]
	if a.GetPipeline() != "sdk-amqp" || a.GetActive() != 3 || a.GetDelayed() != 2 || a.GetReady() ||
		a.GetQueued() != 3 || a.GetWaitingDelay() != 2 || a.GetQueue() != sdkStatQueue {
		t.Errorf("%s: amqp stat %v", codec, a)
	}
	if m.GetPipeline() != "sdk-busy" || m.GetActive() != 6 || !m.GetReady() || m.GetQueued() != 5 || m.GetRunning() != 1 || m.GetDelayed() != 0 {
		t.Errorf("%s: memory stat %v", codec, m)
	}
}
