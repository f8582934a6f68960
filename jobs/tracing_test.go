package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/tracing"
)

// headerExec acks every job, but NACKs (no redelivery) the first run of
// job "doomed", and records the traceparent each run saw.
type headerExec struct {
	mu   sync.Mutex
	seen map[string]string // job id -> traceparent header
	runs map[string]int
}

func (x *headerExec) Exec(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
	var jc frame.JobContext
	if err := json.Unmarshal(pl.Context, &jc); err != nil {
		return frame.Payload{}, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.seen[jc.ID] = strings.Join(jc.Headers["traceparent"], ",")
	x.runs[jc.ID]++
	if jc.ID == "doomed" && x.runs[jc.ID] == 1 {
		return frame.Payload{Body: []byte(`{"type":3,"data":{"message":"bad job"}}`)}, nil
	}
	return frame.Payload{}, nil
}

func (x *headerExec) get(id string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	tp, ok := x.seen[id]
	return tp, ok
}

// tracedManager returns a started manager with the consumed memory
// pipeline "a", tracing into the returned recorder.
func tracedManager(t *testing.T) (*Manager, *headerExec, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	x := &headerExec{seen: map[string]string{}, runs: map[string]int{}}
	m := New(Config{
		Factory: func(ctx context.Context, p config.Pipeline) (Driver, error) {
			return memjobs.New(p.Name, memjobs.Config{}, nil), nil
		},
		Executor:  exectest.Func(x.Exec),
		Pipelines: map[string]config.Pipeline{"a": {Name: "a", Driver: config.DriverMemory, Concurrency: 1, Memory: &memjobs.Config{}}},
		Tracer:    tracing.NewWithProvider(tp),
	})
	if err := m.Start(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
		_ = tp.Shutdown(ctx)
	})
	return m, x, sr
}

// spansNamed returns the ended spans called name, by message id.
func spansNamed(sr *tracetest.SpanRecorder, name string) map[string]sdktrace.ReadOnlySpan {
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		if s.Name() != name {
			continue
		}
		for _, a := range s.Attributes() {
			if a.Key == "messaging.message.id" {
				out[a.Value.AsString()] = s
			}
		}
	}
	return out
}

// TestPushSpans: a push is a producer span per job; a job pushed with a
// traceparent continues that trace, one without starts a trace; the
// worker sees the push span's traceparent in the job's headers, and the
// run and settle spans are in the push span's trace, the run a child of
// the push. The caller's jobs are not modified.
func TestPushSpans(t *testing.T) {
	m, x, sr := tracedManager(t)
	const producer = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	jobs := []consumer.Job{
		{ID: "given", Name: "j", Pipeline: "a", Headers: map[string][]string{"Traceparent": {producer}}},
		{ID: "fresh", Name: "j", Pipeline: "a"},
	}
	if err := m.Push(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	if jobs[1].Headers != nil || len(jobs[0].Headers) != 1 {
		t.Errorf("Push modified the caller's jobs: %+v", jobs)
	}
	waitFor(t, "both settle spans", func() bool { return len(spansNamed(sr, "settle a")) == 2 })
	push, run, settle := spansNamed(sr, "push a"), spansNamed(sr, "run a"), spansNamed(sr, "settle a")
	if got := push["given"].Parent().SpanID().String(); got != "b7ad6b7169203331" ||
		push["given"].SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("push of a job with a traceparent: parent %s, trace %s", got, push["given"].SpanContext().TraceID())
	}
	if push["fresh"].Parent().IsValid() {
		t.Errorf("push of a job without traceparent has parent %s, want a new trace", push["fresh"].Parent().SpanID())
	}
	for _, id := range []string{"given", "fresh"} {
		p := push[id].SpanContext()
		tp, _ := x.get(id)
		if want := "00-" + p.TraceID().String() + "-" + p.SpanID().String() + "-01"; tp != want {
			t.Errorf("%s: worker saw traceparent %q, want the push span's %q", id, tp, want)
		}
		if r := run[id]; r == nil || r.Parent().SpanID() != p.SpanID() || r.SpanContext().TraceID() != p.TraceID() {
			t.Errorf("%s: run span is not a child of the push span", id)
		}
		if s := settle[id]; s == nil || s.SpanContext().TraceID() != p.TraceID() {
			t.Errorf("%s: settle span is not in the push span's trace", id)
		}
	}
}

// TestPushSpanFailure: a push to an unknown pipeline ends its span with
// the error.
func TestPushSpanFailure(t *testing.T) {
	m, _, sr := tracedManager(t)
	err := m.Push(context.Background(), []consumer.Job{{ID: "lost", Name: "j", Pipeline: "nope"}})
	if !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Fatalf("Push = %v", err)
	}
	s := spansNamed(sr, "push nope")["lost"]
	if s == nil || !strings.Contains(s.Status().Description, "nope") {
		t.Errorf("push span of a failed push: %+v", s)
	}
}

// TestDeadJobKeepsTrace: a dead-lettered job keeps the push span's
// traceparent in its headers, and its run after `failed retry` is a child
// of that push span.
func TestDeadJobKeepsTrace(t *testing.T) {
	m, x, sr := tracedManager(t)
	ctx := context.Background()
	if err := m.Push(ctx, []consumer.Job{{ID: "doomed", Name: "j", Pipeline: "a"}}); err != nil {
		t.Fatal(err)
	}
	var dead consumer.DeadJob
	waitFor(t, "the dead job", func() bool {
		var err error
		dead, err = m.FailedShow(ctx, "a", "doomed")
		return err == nil
	})
	push := spansNamed(sr, "push a")["doomed"].SpanContext()
	want := "00-" + push.TraceID().String() + "-" + push.SpanID().String() + "-01"
	if got := strings.Join(dead.Job.Headers["traceparent"], ","); got != want {
		t.Errorf("dead job's traceparent %q, want the push span's %q", got, want)
	}
	if _, err := m.FailedRetry(ctx, "a", consumer.DeadSelection{IDs: []string{"doomed"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second run", func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.runs["doomed"] == 2
	})
	waitFor(t, "two run spans", func() bool {
		n := 0
		for _, s := range sr.Ended() {
			if s.Name() == "run a" {
				n++
				if s.Parent().SpanID() != push.SpanID() || s.SpanContext().TraceID() != push.TraceID() {
					t.Fatalf("run span parent %s, want the push span %s", s.Parent().SpanID(), push.SpanID())
				}
			}
		}
		return n == 2
	})
	if tp, _ := x.get("doomed"); tp != want {
		t.Errorf("retried run saw traceparent %q, want %q", tp, want)
	}
}
