package tracing

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
)

// zipkinSpan is the part of a Zipkin v2 JSON span the tests read.
type zipkinSpan struct {
	TraceID       string            `json:"traceId"`
	ID            string            `json:"id"`
	ParentID      string            `json:"parentId"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Tags          map[string]string `json:"tags"`
	LocalEndpoint struct {
		ServiceName string `json:"serviceName"`
	} `json:"localEndpoint"`
}

// TestZipkinExporter: otel.exporter zipkin posts the spans as Zipkin v2
// JSON to otel.endpoint with otel.headers; the push, run and settle spans
// of one job arrive in one trace, the run a child of the push (whose ids
// are the job's traceparent) and the settlement a child of the run.
func TestZipkinExporter(t *testing.T) {
	type request struct {
		path, method, contentType, apiKey string
		spans                             []zipkinSpan
	}
	var (
		mu  sync.Mutex
		got []request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		rq := request{path: r.URL.Path, method: r.Method, contentType: r.Header.Get("Content-Type"), apiKey: r.Header.Get("Api-Key")}
		if err := json.Unmarshal(raw, &rq.spans); err != nil {
			t.Errorf("Zipkin body: %v\n%s", err, raw)
		}
		mu.Lock()
		got = append(got, rq)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	cfg := &config.OTel{Exporter: config.OTelZipkin, Endpoint: srv.URL + "/api/v2/spans",
		Headers: map[string]string{"api-key": "secret"}, ServiceName: "billing"}
	tr, err := New(context.Background(), cfg, Options{Version: "1"})
	if err != nil || tr == nil {
		t.Fatalf("New = %v, %v", tr, err)
	}
	jobs, p := tr.StartPush(context.Background(), []consumer.Job{{ID: "job-1", Name: "Mail", Pipeline: "orders"}})
	p.End(nil)
	d := &consumer.Delivery{ID: "job-1", Job: "Mail", Pipeline: "orders", Headers: jobs[0].Headers, Attempt: 1}
	j := tr.Received(d)
	start := time.Now()
	j.StartRun(start)
	j.EndRun(errors.New("worker failed"), start.Add(time.Millisecond))
	j.Settled(consumer.Outcome{Action: consumer.Retry, Delay: time.Second}, nil, start.Add(time.Millisecond), start.Add(2*time.Millisecond))
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	byName := map[string]zipkinSpan{}
	for _, r := range got {
		if r.path != "/api/v2/spans" || r.method != http.MethodPost || r.contentType != "application/json" || r.apiKey != "secret" {
			t.Errorf("request %s %s, content type %q, api-key %q", r.method, r.path, r.contentType, r.apiKey)
		}
		for _, s := range r.spans {
			byName[s.Name] = s
		}
	}
	push, run, settle := byName["push orders"], byName["run orders"], byName["settle orders"]
	if len(byName) != 3 || push.ID == "" || run.ID == "" || settle.ID == "" {
		t.Fatalf("spans received: %+v", byName)
	}
	tp := strings.Split(jobs[0].Headers["traceparent"][0], "-")
	if len(tp) != 4 || push.TraceID != tp[1] || push.ID != tp[2] || push.ParentID != "" {
		t.Errorf("push span trace %s id %s parent %q; job traceparent %v", push.TraceID, push.ID, push.ParentID, tp)
	}
	if run.TraceID != push.TraceID || run.ParentID != push.ID {
		t.Errorf("run span trace %s parent %s, want trace %s parent %s (the push)", run.TraceID, run.ParentID, push.TraceID, push.ID)
	}
	if settle.TraceID != push.TraceID || settle.ParentID != run.ID {
		t.Errorf("settle span trace %s parent %s, want trace %s parent %s (the run)", settle.TraceID, settle.ParentID, push.TraceID, run.ID)
	}
	if push.Kind != "PRODUCER" || run.Kind != "CONSUMER" || push.LocalEndpoint.ServiceName != "billing" {
		t.Errorf("push kind %q service %q, run kind %q", push.Kind, push.LocalEndpoint.ServiceName, run.Kind)
	}
	if run.Tags["error"] != "worker failed" || settle.Tags["pipevisor.outcome"] != "retry" || push.Tags["messaging.message.id"] != "job-1" {
		t.Errorf("tags: run %v, settle %v, push %v", run.Tags, settle.Tags, push.Tags)
	}
}

// TestZipkinBadEndpoint: an endpoint that is not a URL fails New with
// ErrExporter (config validation reports it first).
func TestZipkinBadEndpoint(t *testing.T) {
	tr, err := New(context.Background(), &config.OTel{Exporter: config.OTelZipkin, Endpoint: "zipkin:9411"}, Options{})
	if tr != nil || !errors.Is(err, ErrExporter) {
		t.Errorf("New = %v, %v; want ErrExporter", tr, err)
	}
}
