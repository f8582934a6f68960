package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
)

func TestNewOff(t *testing.T) {
	for _, cfg := range []*config.OTel{nil, {Exporter: "jaeger"}, {Exporter: "kafka"}} {
		tr, err := New(context.Background(), cfg, Options{})
		if tr != nil || err != nil {
			t.Errorf("New(%+v) = %v, %v; want no tracer", cfg, tr, err)
		}
	}
	// A nil tracer does nothing and keeps the jobs as they are.
	var tr *Tracer
	jobs := []consumer.Job{{ID: "a"}}
	out, p := tr.StartPush(context.Background(), jobs)
	p.End(errors.New("x"))
	if &out[0] != &jobs[0] || out[0].Headers != nil {
		t.Errorf("nil tracer changed the jobs: %+v", out)
	}
	j := tr.Received(&consumer.Delivery{})
	j.StartRun(time.Now())
	j.EndRun(nil, time.Now())
	j.Settled(consumer.Outcome{}, nil, time.Now(), time.Now())
	if j.Enabled() || tr.Shutdown(context.Background()) != nil {
		t.Error("nil tracer is not off")
	}
}

// TestStdoutExporter: otel.exporter stdout writes each span as a JSON
// object, with the service name of otel.resource, by Shutdown at the
// latest.
func TestStdoutExporter(t *testing.T) {
	var buf bytes.Buffer
	cfg := &config.OTel{Exporter: "stdout", ServiceName: "old", Resource: &config.OTelResource{ServiceName: "billing", ServiceNamespace: "ns"}}
	tr, err := New(context.Background(), cfg, Options{Version: "9.9", Stdout: &buf})
	if err != nil || tr == nil {
		t.Fatalf("New = %v, %v", tr, err)
	}
	out, p := tr.StartPush(context.Background(), []consumer.Job{{ID: "x", Pipeline: "orders"}})
	p.End(nil)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var span struct {
		Name        string
		SpanContext struct{ TraceID, SpanID string }
		Resource    []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &span); err != nil {
		t.Fatalf("stdout: %v\n%s", err, buf.String())
	}
	want := "00-" + span.SpanContext.TraceID + "-" + span.SpanContext.SpanID + "-01"
	if span.Name != "push orders" || out[0].Headers["traceparent"][0] != want {
		t.Errorf("span %+v, job traceparent %v", span, out[0].Headers)
	}
	res := map[string]any{}
	for _, kv := range span.Resource {
		res[kv.Key] = kv.Value.Value
	}
	if res["service.name"] != "billing" || res["service.version"] != "9.9" || res["service.namespace"] != "ns" {
		t.Errorf("resource = %v", res)
	}
}

// TestPushEndBatchError: only the jobs a BatchError names end in error.
func TestPushEndBatchError(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tr := NewWithProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr)))
	_, p := tr.StartPush(context.Background(), []consumer.Job{{ID: "0"}, {ID: "1"}})
	p.End(&consumer.BatchError{Failed: map[int]error{1: errors.New("nacked")}})
	ended := sr.Ended()
	if len(ended) != 2 || ended[0].Status().Description != "" || ended[1].Status().Description != "nacked" {
		t.Errorf("statuses: %+v %+v", ended[0].Status(), ended[1].Status())
	}
}

func TestHeaderCarrier(t *testing.T) {
	h := headerCarrier{"TraceParent": {"a"}, "x": {}}
	if h.Get("traceparent") != "a" || h.Get("x") != "" || h.Get("none") != "" {
		t.Errorf("Get: %q %q", h.Get("traceparent"), h.Get("x"))
	}
	h.Set("traceparent", "b")
	if len(h) != 2 || h["traceparent"][0] != "b" || len(h.Keys()) != 2 {
		t.Errorf("Set: %v", h)
	}
}

// TestServiceNameFromEnvironment: without a service name in the file,
// OTEL_SERVICE_NAME names the service; the file's name wins over it.
func TestServiceNameFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	for _, tc := range []struct {
		cfg  *config.OTel
		want string
	}{
		{&config.OTel{Exporter: "stdout"}, "from-env"},
		{&config.OTel{Exporter: "stdout", ServiceName: "from-file"}, "from-file"},
	} {
		var buf bytes.Buffer
		tr, err := New(context.Background(), tc.cfg, Options{Stdout: &buf})
		if err != nil {
			t.Fatal(err)
		}
		_, p := tr.StartPush(context.Background(), []consumer.Job{{ID: "x"}})
		p.End(nil)
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(buf.Bytes(), []byte(`{"Key":"service.name","Value":{"Type":"STRING","Value":"`+tc.want+`"}}`)) {
			t.Errorf("service.name is not %q: %s", tc.want, buf.String())
		}
	}
}
