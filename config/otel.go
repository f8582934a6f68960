package config

import "net/url"

// Values of otel.exporter and otel.client.
const (
	// OTelOTLP exports spans over OTLP (otel.client says http or grpc).
	OTelOTLP = "otlp"
	// OTelStdout and OTelStderr write spans as JSON to the supervisor's
	// standard output or error.
	OTelStdout = "stdout"
	OTelStderr = "stderr"
	// OTelZipkin posts spans as Zipkin v2 JSON to otel.endpoint, the
	// collector's URL.
	OTelZipkin = "zipkin"
	// OTelHTTP and OTelGRPC are the OTLP clients.
	OTelHTTP = "http"
	OTelGRPC = "grpc"
)

// OTelJaeger is RoadRunner's former jaeger exporter, which sent Jaeger
// Thrift to otel.endpoint (a collector's /api/traces URL). The exporter is
// gone upstream (RoadRunner refuses it too) and that URL does not speak
// OTLP, so it is not mapped to the otlp exporter: tracing stays off with a
// warning that says what to write instead.
const OTelJaeger = "jaeger"

// OTel is RoadRunner's otel: section: tracing of pushes, runs and
// settlements with OpenTelemetry.
//
// A missing section means no tracing. After Load, Export() is one of
// OTelOTLP (the default), OTelStdout, OTelStderr, OTelZipkin, or "" when
// the written exporter is not supported (jaeger: a warning says so and
// tracing is off); Client
// is "" (http, unless OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL says grpc), OTelHTTP or OTelGRPC.
type OTel struct {
	// Resource names the service in the exported spans; its keys win
	// over the deprecated service_name and service_version.
	Resource *OTelResource `yaml:"resource"`
	// Insecure sends OTLP without TLS.
	Insecure bool `yaml:"insecure"`
	// Compress gzips OTLP requests.
	Compress bool `yaml:"compress"`
	// Exporter is otlp, stdout, stderr or zipkin.
	Exporter string `yaml:"exporter"`
	// CustomURL is the URL path of the OTLP http client (default
	// /v1/traces).
	CustomURL string `yaml:"custom_url"`
	// Endpoint is the OTLP collector's host:port (default: the
	// OTEL_EXPORTER_OTLP_* environment, else localhost:4318 for http or
	// localhost:4317 for grpc). For the zipkin exporter it is the
	// collector's URL, as in RoadRunner (default: the
	// OTEL_EXPORTER_ZIPKIN_ENDPOINT environment, else
	// http://localhost:9411/api/v2/spans).
	Endpoint string `yaml:"endpoint"`
	// Client is the OTLP transport: http or grpc.
	Client string `yaml:"client"`
	// ServiceName and ServiceVersion: deprecated in RoadRunner in favour
	// of resource.service_name and resource.service_version.
	ServiceName    string `yaml:"service_name"`
	ServiceVersion string `yaml:"service_version"`
	// Headers are sent with every OTLP or Zipkin request (e.g. an API
	// key).
	Headers map[string]string `yaml:"headers"`
}

// OTelResource is otel.resource.
type OTelResource struct {
	ServiceName       string `yaml:"service_name"`
	ServiceVersion    string `yaml:"service_version"`
	ServiceNamespace  string `yaml:"service_namespace"`
	ServiceInstanceID string `yaml:"service_instance_id"`
}

// Export returns the exporter to use: OTelOTLP (when otel.exporter is
// empty), OTelStdout, OTelStderr or OTelZipkin; "" when there is no otel
// section or its exporter is not supported (no tracing).
func (o *OTel) Export() string {
	switch {
	case o == nil:
		return ""
	case o.Exporter == "":
		return OTelOTLP
	case o.Exporter == OTelOTLP, o.Exporter == OTelStdout, o.Exporter == OTelStderr, o.Exporter == OTelZipkin:
		return o.Exporter
	}
	return ""
}

// Transport returns the OTLP client: OTelHTTP or OTelGRPC, or "" when
// otel.client is empty (the OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL environment decides, else http). An
// unknown client is http, as in RoadRunner.
func (o *OTel) Transport() string {
	switch o.Client {
	case "", OTelGRPC:
		return o.Client
	}
	return OTelHTTP
}

// Service returns the service name and version for the exported spans:
// resource.service_name, else service_name (and the same for the
// version); "" when neither is set.
func (o *OTel) Service() (name, version string) {
	if o.Resource != nil {
		name, version = o.Resource.ServiceName, o.Resource.ServiceVersion
	}
	if name == "" {
		name = o.ServiceName
	}
	if version == "" {
		version = o.ServiceVersion
	}
	return name, version
}

// checkErrors validates the otel section (nothing when absent): an
// unknown exporter is an error, and so is a zipkin endpoint that is not
// an absolute URL (the exporter would refuse it at start).
func (o *OTel) checkErrors() []*Error {
	switch {
	case o == nil || o.Exporter == OTelJaeger:
		return nil
	case o.Export() == "":
		return []*Error{errAt("otel.exporter", 0, "unknown exporter %q (otlp, stdout, stderr or zipkin)", o.Exporter)}
	case o.Export() == OTelZipkin && o.Endpoint != "":
		if u, err := url.Parse(o.Endpoint); err != nil || u.Scheme == "" || u.Host == "" {
			return []*Error{errAt("otel.endpoint", 0, "the zipkin exporter needs the collector's URL (like http://zipkin:9411/api/v2/spans), not %q", o.Endpoint)}
		}
	}
	return nil
}

// warnings returns what of the otel section has no effect: the jaeger
// exporter (tracing is then off), an unknown client (http is used, as in
// RoadRunner), collector keys with the stdout exporters, OTLP-only keys
// with the zipkin exporter.
func (o *OTel) warnings() []*Error {
	if o == nil {
		return nil
	}
	var w []*Error
	if o.Exporter == OTelJaeger {
		w = append(w, errAt("otel.exporter", 0,
			"ignored: the jaeger exporter is gone (Jaeger collectors accept OTLP: set exporter: otlp and endpoint: <jaeger host>:4318, or client: grpc with port 4317): no spans are exported"))
	}
	if o.Client != "" && o.Client != OTelHTTP && o.Client != OTelGRPC {
		w = append(w, errAt("otel.client", 0, "unknown client %q: using http", o.Client))
	}
	if e := o.Export(); e == OTelStdout || e == OTelStderr {
		set := func(ok bool, key string) {
			if ok {
				w = append(w, errAt(joinPath("otel", key), 0, "ignored: only the otlp exporter sends to a collector"))
			}
		}
		set(o.Endpoint != "", "endpoint")
		set(o.CustomURL != "", "custom_url")
		set(o.Client != "", "client")
		set(len(o.Headers) > 0, "headers")
	}
	if o.Export() == OTelZipkin {
		set := func(ok bool, key string) {
			if ok {
				w = append(w, errAt(joinPath("otel", key), 0, "ignored with the zipkin exporter: endpoint is the collector's whole URL"))
			}
		}
		set(o.CustomURL != "", "custom_url")
		set(o.Client != "", "client")
		set(o.Insecure, "insecure")
		set(o.Compress, "compress")
	}
	return w
}
