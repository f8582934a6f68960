// Package tracing makes the OpenTelemetry spans of jobs: one for each push,
// one for each run on a worker and one for each settlement, linked by the
// W3C traceparent (and tracestate) the job carries in its headers from the
// producer to the worker, across retries and dead-lettering.
//
// A nil *Tracer is tracing turned off: every method returns at once, so
// the per-job path costs a nil check and no header work.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/exporters/zipkin"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipevisor/pipevisor/config"
)

// ScopeName is the instrumentation scope of Pipevisor's spans.
const ScopeName = "github.com/pipevisor/pipevisor"

// DefaultServiceName is the service.name of the spans when the otel
// section names none.
const DefaultServiceName = "pipevisor"

// ErrExporter wraps a failure to set up the exporter of otel.exporter.
var ErrExporter = errors.New("tracing: exporter")

// Tracer makes the spans of jobs. Its methods are safe for concurrent use;
// on a nil *Tracer they do nothing.
type Tracer struct {
	tr       trace.Tracer
	prop     propagation.TextMapPropagator
	provider *sdktrace.TracerProvider // nil when made by NewWithProvider
}

// Options are the parts of New that do not come from the otel section.
type Options struct {
	// Version is the supervisor's version, the service.version when the
	// section sets none.
	Version string
	// Stdout and Stderr are where the stdout and stderr exporters write
	// (default os.Stdout and os.Stderr).
	Stdout, Stderr io.Writer
}

// New returns the tracer of the otel section cfg, exporting in batches, or
// nil (tracing off) when cfg is nil or its exporter is not supported
// (cfg.Export() is ""). The OTLP and Zipkin exporters connect lazily: a
// collector that is down costs dropped spans, not a failed start. The
// Zipkin exporter posts Zipkin v2 JSON to otel.endpoint (the collector's
// URL, default OTEL_EXPORTER_ZIPKIN_ENDPOINT, else
// http://localhost:9411/api/v2/spans) with otel.headers; upstream has
// deprecated that exporter module, so otlp stays the one to recommend.
// The caller must call Shutdown to flush the spans still buffered.
func New(ctx context.Context, cfg *config.OTel, opt Options) (*Tracer, error) {
	exp, err := exporter(ctx, cfg, opt)
	if err != nil || exp == nil {
		return nil, err
	}
	// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME fill what the file
	// leaves out; the file's keys win.
	env := resource.Environment()
	name, version := cfg.Service()
	if name == "" {
		name = DefaultServiceName
		if v, ok := env.Set().Value("service.name"); ok && v.AsString() != "" {
			name = v.AsString()
		}
	}
	if version == "" {
		version = opt.Version
	}
	attrs := []attribute.KeyValue{
		attribute.String("service.name", name),
		attribute.String("service.version", version),
		attribute.String("os.name", runtime.GOOS),
		attribute.String("host.arch", runtime.GOARCH),
	}
	if r := cfg.Resource; r != nil {
		if r.ServiceNamespace != "" {
			attrs = append(attrs, attribute.String("service.namespace", r.ServiceNamespace))
		}
		if r.ServiceInstanceID != "" {
			attrs = append(attrs, attribute.String("service.instance.id", r.ServiceInstanceID))
		}
	}
	res, err := resource.Merge(env, resource.NewSchemaless(attrs...))
	if err != nil {
		res = resource.NewSchemaless(attrs...)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := NewWithProvider(tp)
	t.provider = tp
	return t, nil
}

// exporter returns the span exporter of cfg, nil when tracing is off.
func exporter(ctx context.Context, cfg *config.OTel, opt Options) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.Export() {
	case "":
		return nil, nil
	case config.OTelStdout:
		w := opt.Stdout
		if w == nil {
			w = os.Stdout
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	case config.OTelStderr:
		w := opt.Stderr
		if w == nil {
			w = os.Stderr
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	case config.OTelZipkin:
		var o []zipkin.Option
		if len(cfg.Headers) > 0 {
			o = append(o, zipkin.WithHeaders(cfg.Headers))
		}
		exp, err = zipkin.New(cfg.Endpoint, o...)
	default:
		exp, err = otlptrace.New(ctx, otlpClient(cfg))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: otel.exporter %s: %w", ErrExporter, cfg.Export(), err)
	}
	return exp, nil
}

// otlpClient returns the OTLP client of cfg: otel.client, else the
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
// environment ("grpc" or "http/protobuf"), else http.
func otlpClient(cfg *config.OTel) otlptrace.Client {
	client := cfg.Transport()
	if client == "" {
		proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		client = config.OTelHTTP
		if proto == "grpc" {
			client = config.OTelGRPC
		}
	}
	if client == config.OTelGRPC {
		var o []otlptracegrpc.Option
		if cfg.Insecure {
			o = append(o, otlptracegrpc.WithInsecure())
		}
		if cfg.Compress {
			o = append(o, otlptracegrpc.WithCompressor("gzip"))
		}
		if cfg.Endpoint != "" {
			o = append(o, otlptracegrpc.WithEndpoint(cfg.Endpoint))
		}
		if len(cfg.Headers) > 0 {
			o = append(o, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		return otlptracegrpc.NewClient(o...)
	}
	var o []otlptracehttp.Option
	if cfg.Insecure {
		o = append(o, otlptracehttp.WithInsecure())
	}
	if cfg.Compress {
		o = append(o, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	}
	if cfg.CustomURL != "" {
		o = append(o, otlptracehttp.WithURLPath(cfg.CustomURL))
	}
	if cfg.Endpoint != "" {
		o = append(o, otlptracehttp.WithEndpoint(cfg.Endpoint))
	}
	if len(cfg.Headers) > 0 {
		o = append(o, otlptracehttp.WithHeaders(cfg.Headers))
	}
	return otlptracehttp.NewClient(o...)
}

// NewWithProvider returns a tracer whose spans come from tp (tests use an
// SDK provider with a tracetest.SpanRecorder). Shutdown does not shut tp
// down.
func NewWithProvider(tp trace.TracerProvider) *Tracer {
	return &Tracer{
		tr:   tp.Tracer(ScopeName),
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
}

// Shutdown exports the spans still buffered and stops the exporter; ctx
// bounds the wait. It is a no-op on a nil tracer or one made by
// NewWithProvider.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
