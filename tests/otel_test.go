package tests

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// exportedSpan is what otel.exporter stdout writes for a span (one JSON
// object per line).
type exportedSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s exportedSpan) attr(key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			b, _ := json.Marshal(a.Value.Value)
			return strings.Trim(string(b), `"`)
		}
	}
	return ""
}

// TestOTelStdout: with otel: {exporter: stdout}, a job pushed with a
// producer's traceparent header gets a push span that is a child of the
// producer's span, and its two runs (the worker fails the first and asks
// for a retry) and their settlements are exported in the producer's trace,
// each run a child of the push span; the spans still buffered are written
// at shutdown.
func TestOTelStdout(t *testing.T) {
	requireTool(t, "php")
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	log := filepath.Join(t.TempDir(), "e2e.log")
	cfg := e2eConfig(t, behaveWorker, log, 1, "otel:\n  exporter: stdout\n  resource: {service_name: e2e}\n", "      driver: memory\n")
	s := startConsuming(t, cfg)
	s.rpcPush([]consumer.Job{{ID: "traced", Name: "nack-once", Pipeline: "default",
		Headers: map[string][]string{"traceparent": {"00-" + traceID + "-" + spanID + "-01"}}}}, 1)
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit %d", code)
	}

	var push *exportedSpan
	var runs, settles []exportedSpan
	for _, line := range strings.Split(s.output(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var sp exportedSpan
		if err := json.Unmarshal([]byte(line), &sp); err != nil || sp.SpanContext.TraceID == "" {
			continue // a JSON log line
		}
		if sp.attr("messaging.message.id") != "traced" {
			continue
		}
		switch sp.Name {
		case "push default":
			push = &sp
		case "run default":
			runs = append(runs, sp)
		case "settle default":
			settles = append(settles, sp)
		}
	}
	if push == nil || len(runs) != 2 || len(settles) != 2 {
		t.Fatalf("exported: push %v, %d runs, %d settles, want 1, 2, 2", push != nil, len(runs), len(settles))
	}
	if push.SpanContext.TraceID != traceID || push.Parent.SpanID != spanID {
		t.Errorf("push span: trace %s parent %s, want the producer's %s/%s", push.SpanContext.TraceID, push.Parent.SpanID, traceID, spanID)
	}
	for _, r := range runs {
		if r.SpanContext.TraceID != traceID || r.Parent.SpanID != push.SpanContext.SpanID {
			t.Errorf("run (attempt %s): trace %s parent %s, want %s/%s", r.attr("pipevisor.attempt"), r.SpanContext.TraceID, r.Parent.SpanID, traceID, push.SpanContext.SpanID)
		}
	}
	outcomes := map[string]bool{}
	for _, st := range settles {
		outcomes[st.attr("pipevisor.outcome")] = true
		if st.SpanContext.TraceID != traceID {
			t.Errorf("settle span in trace %s, want %s", st.SpanContext.TraceID, traceID)
		}
	}
	if !outcomes["retry"] || !outcomes["ack"] {
		t.Errorf("settle outcomes %v, want retry and ack", outcomes)
	}
}
