package config

import (
	"slices"
	"strings"
	"testing"
)

// TestOTel: the otel section is decoded with RoadRunner's keys; the
// exporter defaults to otlp; jaeger turns tracing off with a warning
// that says to use otlp, an unknown exporter is an error naming the key,
// and collector keys with a stdout exporter are warnings.
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

	r, err = parseWith(t, "otel: {exporter: jaeger, client: udp}\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`otel.client: unknown client "udp": using http (line 3)`,
		`otel.exporter: ignored: the jaeger exporter is gone (Jaeger collectors accept OTLP: set exporter: otlp and endpoint: <jaeger host>:4318, or client: grpc with port 4317): no spans are exported (line 3)`,
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
	if got := errorStrings(err); len(got) != 1 || !strings.Contains(got[0], `otel.exporter: unknown exporter "kafka" (otlp, stdout, stderr or zipkin)`) {
		t.Errorf("errors %q", got)
	}
}

// TestOTelZipkin: exporter zipkin is supported with RoadRunner's endpoint
// key holding the collector's URL; an endpoint that is no URL is an error
// at otel.endpoint, and the OTLP-only keys are warnings.
func TestOTelZipkin(t *testing.T) {
	r, err := parseWith(t, "otel:\n  exporter: zipkin\n  endpoint: http://zipkin:9411/api/v2/spans\n  headers: {api-key: k}\n")
	if err != nil || len(r.Warnings) != 0 {
		t.Fatalf("Parse = %v, warnings %q", err, warningStrings(r))
	}
	if r.OTel.Export() != OTelZipkin || r.OTel.Endpoint != "http://zipkin:9411/api/v2/spans" {
		t.Errorf("otel = %+v, export %q", r.OTel, r.OTel.Export())
	}

	r, err = parseWith(t, "otel: {exporter: zipkin}\n")
	if err != nil || len(r.Warnings) != 0 || r.OTel.Export() != OTelZipkin {
		t.Errorf("zipkin without endpoint: %v, warnings %q", err, warningStrings(r))
	}

	_, err = parseWith(t, "otel:\n  exporter: zipkin\n  endpoint: zipkin:9411\n")
	if got := errorStrings(err); len(got) != 1 || !strings.Contains(got[0], `otel.endpoint: the zipkin exporter needs the collector's URL`) {
		t.Errorf("errors %q", got)
	}

	r, err = parseWith(t, "otel:\n  exporter: zipkin\n  insecure: true\n  custom_url: /x\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`otel.insecure: ignored with the zipkin exporter: endpoint is the collector's whole URL (line 5)`,
		`otel.custom_url: ignored with the zipkin exporter: endpoint is the collector's whole URL (line 6)`,
	}
	if got := warningStrings(r); !slices.Equal(got, want) {
		t.Errorf("warnings %q", got)
	}
}
