package tracing

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
)

// TestOTLPHTTP: the otlp exporter with the http client sends the spans to
// otel.endpoint at otel.custom_url, with otel.headers, gzipped when
// otel.compress is set, without TLS when otel.insecure is set; an
// in-process receiver decodes them.
func TestOTLPHTTP(t *testing.T) {
	type request struct {
		path, apiKey, encoding string
		req                    *coltrace.ExportTraceServiceRequest
	}
	var (
		mu  sync.Mutex
		got []request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			t.Error(err)
		}
		rq := request{req: &coltrace.ExportTraceServiceRequest{}, path: r.URL.Path, apiKey: r.Header.Get("Api-Key"), encoding: r.Header.Get("Content-Encoding")}
		if err := proto.Unmarshal(raw, rq.req); err != nil {
			t.Errorf("OTLP body: %v", err)
		}
		mu.Lock()
		got = append(got, rq)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	cfg := &config.OTel{Client: "http", Endpoint: strings.TrimPrefix(srv.URL, "http://"), Insecure: true, Compress: true,
		CustomURL: "/collect/traces", Headers: map[string]string{"api-key": "secret"}, ServiceName: "svc"}
	tr, err := New(context.Background(), cfg, Options{Version: "1"})
	if err != nil || tr == nil {
		t.Fatalf("New = %v, %v", tr, err)
	}
	_, p := tr.StartPush(context.Background(), []consumer.Job{{ID: "x", Pipeline: "orders"}})
	p.End(nil)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d OTLP requests, want 1", len(got))
	}
	r := got[0]
	if r.path != "/collect/traces" || r.apiKey != "secret" || r.encoding != "gzip" {
		t.Errorf("request path %q, api-key %q, encoding %q", r.path, r.apiKey, r.encoding)
	}
	rs := r.req.GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
		t.Fatalf("spans: %v", rs)
	}
	if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "push orders" {
		t.Errorf("span %q", name)
	}
	service := ""
	for _, kv := range rs[0].GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	if service != "svc" {
		t.Errorf("service.name %q", service)
	}
}
