package config

import (
	"slices"
	"strings"
	"testing"
)

// TestOTel: the otel section is decoded with RoadRunner's keys; the
// exporter defaults to otlp; zipkin and jaeger turn tracing off with a
// warning, an unknown exporter is an error naming the key, and collector
// keys with a stdout exporter are warnings.
func TestOTel(t *testing.T) {
	r, err := parseWith(t, `otel:
  exporter: otlp
  client: grpc
  endpoint: collector:4317
  insecure: true
  compress: true
  headers: {api-key: k}
  service_name: old
  resource: {service_name: billing, service_version: "2.1"}
`)
	if err != nil || len(r.Warnings) != 0 {
		t.Fatalf("Parse = %v, warnings %q", err, warningStrings(r))
	}
	o := r.OTel
	if o.Export() != OTelOTLP || o.Transport() != OTelGRPC || o.Endpoint != "collector:4317" || !o.Insecure || !o.Compress || o.Headers["api-key"] != "k" {
		t.Errorf("otel = %+v", o)
	}
	if name, version := o.Service(); name != "billing" || version != "2.1" {
		t.Errorf("Service() = %q, %q", name, version)
	}

	r, err = parseWith(t, "otel: {service_name: svc, service_version: '1'}\n")
	if err != nil || r.OTel.Export() != OTelOTLP || r.OTel.Transport() != "" {
		t.Fatalf("default exporter: %v, %+v", err, r.OTel)
	}
	if name, version := r.OTel.Service(); name != "svc" || version != "1" {
		t.Errorf("Service() = %q, %q", name, version)
	}

	r, err = parseWith(t, "")
	if err != nil || r.OTel.Export() != "" {
		t.Errorf("no section: %v, export %q", err, r.OTel.Export())
	}

	r, err = parseWith(t, "otel: {exporter: zipkin, client: udp}\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`otel.client: unknown client "udp": using http (line 3)`,
		`otel.exporter: ignored: the zipkin exporter is not supported (use otlp, which Jaeger and Zipkin collectors accept): no spans are exported (line 3)`,
	}
	if got := warningStrings(r); !slices.Equal(got, want) || r.OTel.Export() != "" || r.OTel.Transport() != OTelHTTP {
		t.Errorf("warnings %q, export %q", got, r.OTel.Export())
	}

	r, err = parseWith(t, "otel:\n  exporter: stdout\n  endpoint: x:1\n")
	if err != nil || r.OTel.Export() != OTelStdout {
		t.Fatal(err)
	}
	if got := warningStrings(r); len(got) != 1 || !strings.HasPrefix(got[0], "otel.endpoint: ignored: only the otlp exporter") {
		t.Errorf("warnings %q", got)
	}

	_, err = parseWith(t, "otel: {exporter: kafka}\n")
	if got := errorStrings(err); len(got) != 1 || !strings.Contains(got[0], `otel.exporter: unknown exporter "kafka" (otlp, stdout or stderr)`) {
		t.Errorf("errors %q", got)
	}
}
