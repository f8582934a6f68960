package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/tracing"
)

// A producer's span, as a W3C traceparent.
const (
	producerTrace       = "0af7651916cd43dd8448eb211c80319c"
	producerSpan        = "b7ad6b7169203331"
	producerTraceparent = "00-" + producerTrace + "-" + producerSpan + "-01"
)

// recorded returns a tracer whose spans end up in the returned recorder.
func recorded(t *testing.T) (*tracing.Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tracing.NewWithProvider(tp), sr
}

// startTraced runs p; it is stopped at the end of the test.
func startTraced(t *testing.T, p *Pipeline) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(context.Background())
	}()
	t.Cleanup(func() {
		_ = p.Stop(context.Background())
		<-done
	})
}

// spanAttr returns the value of attribute key of s, "" when absent.
func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// TestTracingRunAndSettleSpans: with a tracer in Run's context, every run
// on a worker is a span that is a child of the producer's traceparent the
// job carries, its settlement a child of the run, and the run of a retry
// (after a worker crash) is in the same trace; one job at a time and in
// batches (pipelining: one span per job of the batch).
func TestTracingRunAndSettleSpans(t *testing.T) {
	for _, pipelining := range []int{1, 4} {
		t.Run(fmt.Sprint("pipelining=", pipelining), func(t *testing.T) {
			tr, sr := recorded(t)
			q := memjobs.New("mem", memjobs.Config{}, nil)
			t.Cleanup(func() { _ = q.Close(context.Background()) })
			const n = 6
			jobs := make([]consumer.Job, n)
			for i := range jobs {
				jobs[i] = consumer.Job{ID: fmt.Sprint("j", i), Name: "App\\Job", Pipeline: "mem",
					Headers: map[string][]string{"traceparent": {producerTraceparent}}}
			}
			if err := q.Publish(context.Background(), jobs); err != nil {
				t.Fatal(err)
			}
			var (
				mu   sync.Mutex
				seen []string // traceparents the worker saw
				runs = map[string]int{}
			)
			ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
				jc := jobContext(t, pl)
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, jc.Headers["traceparent"]...)
				runs[jc.ID]++
				if jc.ID == "j1" && runs[jc.ID] == 1 {
					return frame.Payload{}, fmt.Errorf("worker crashed")
				}
				return frame.Payload{}, nil
			})
			p := New(Config{Name: "mem", Concurrency: 2, Pipelining: pipelining, Rand: fixedRand, Tracer: tr}, q, ex, nil)
			startTraced(t, p)
			waitFor(t, "all acked", func() bool { return p.Stat(context.Background()).Acked == n })

			mu.Lock()
			for _, tp := range seen {
				if tp != producerTraceparent {
					t.Errorf("worker saw traceparent %q, want the producer's %q", tp, producerTraceparent)
				}
			}
			mu.Unlock()

			runSpans := map[string]sdktrace.ReadOnlySpan{} // id/attempt -> run span
			var settles []sdktrace.ReadOnlySpan
			for _, s := range sr.Ended() {
				switch s.Name() {
				case "run mem":
					runSpans[spanAttr(s, "messaging.message.id")+"/"+spanAttr(s, "pipevisor.attempt")] = s
				case "settle mem":
					settles = append(settles, s)
				}
			}
			if len(runSpans) != n+1 || len(settles) != n+1 {
				t.Fatalf("%d run spans and %d settle spans, want %d of each (one job retried)", len(runSpans), len(settles), n+1)
			}
			for key, s := range runSpans {
				if got := s.SpanContext().TraceID().String(); got != producerTrace {
					t.Errorf("run %s: trace %s, want the producer's %s", key, got, producerTrace)
				}
				if got := s.Parent().SpanID().String(); got != producerSpan {
					t.Errorf("run %s: parent %s, want the producer's span %s", key, got, producerSpan)
				}
				if s.SpanKind() != trace.SpanKindConsumer {
					t.Errorf("run %s: kind %v", key, s.SpanKind())
				}
			}
			if _, ok := runSpans["j1/2"]; !ok {
				t.Errorf("no run span for the retry of j1: %v", runSpans)
			}
			if s := runSpans["j1/1"]; s != nil && s.Status().Description != "worker crashed" {
				t.Errorf("failed run's status = %+v", s.Status())
			}
			for _, s := range settles {
				key := spanAttr(s, "messaging.message.id") + "/" + spanAttr(s, "pipevisor.attempt")
				run := runSpans[key]
				if run == nil || s.Parent().SpanID() != run.SpanContext().SpanID() || s.SpanContext().TraceID() != run.SpanContext().TraceID() {
					t.Errorf("settle %s: parent %s, want its run span", key, s.Parent().SpanID())
				}
				want := "ack"
				if key == "j1/1" {
					want = "retry"
				}
				if got := spanAttr(s, "pipevisor.outcome"); got != want {
					t.Errorf("settle %s: outcome %q, want %q", key, got, want)
				}
			}
		})
	}
}

// TestTracingOffLeavesHeaders: without a tracer the worker sees the
// headers as pushed, with no traceparent added.
func TestTracingOffLeavesHeaders(t *testing.T) {
	q := memjobs.New("mem", memjobs.Config{}, nil)
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	if err := q.Publish(context.Background(), []consumer.Job{{ID: "a", Name: "j", Pipeline: "mem",
		Headers: map[string][]string{"k": {"v"}}}}); err != nil {
		t.Fatal(err)
	}
	got := make(chan map[string][]string, 1)
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		got <- jobContext(t, pl).Headers
		return frame.Payload{}, nil
	})
	p := New(Config{Name: "mem"}, q, ex, nil)
	startTraced(t, p)
	h := <-got
	if _, ok := h["traceparent"]; ok || len(h["k"]) != 1 {
		t.Errorf("headers = %v, want only k", h)
	}
}
