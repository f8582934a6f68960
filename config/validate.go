package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// validate runs the checks that need more than one value, and the range
// checks of the top-level sections. It returns errors and warnings; lines
// are filled in by the caller.
func (r *Root) validate() (errs, warnings []*Error) {
	add := func(path, format string, args ...any) {
		errs = append(errs, errAt(path, 0, format, args...))
	}

	switch r.Version {
	case "3":
	case "":
		add("version", `required: write version: "3"`)
	default:
		add("version", `must be "3" (got %s)`, quote(r.Version))
	}

	if reason := checkListen(r.RPC.Listen); reason != "" {
		add("rpc.listen", "%s", reason)
	}
	if r.RPC.MaxConnections < 0 {
		add("rpc.max_connections", "must be >= 0 (0 means %d; got %d)", DefaultRPCMaxConnections, r.RPC.MaxConnections)
	}
	if n := r.RPC.MaxInflightBytes; n < MinRPCMaxInflightBytes {
		add("rpc.max_inflight_bytes", "must be at least %d (1 MiB), in bytes (0 means %d, 128 MiB; got %d)", MinRPCMaxInflightBytes, DefaultRPCMaxInflightBytes, n)
	}

	if len(r.Server.Command) == 0 && len(r.Jobs.Pool.Command) == 0 && (r.Jobs.Pool.set || len(r.Jobs.Pools) == 0) {
		add("server.command", "required (or jobs.pool.command): the command that starts one worker")
	}
	for i, arg := range r.Server.Command {
		if arg == "" {
			add(indexPath("server.command", i), "must not be empty")
		}
	}
	switch r.Server.Relay {
	case "", "pipes":
	default:
		// RoadRunner's socket relays: the workers are told RR_RELAY=pipes.
		warnings = append(warnings, errAt("server.relay", 0, `%s ignored: workers talk over pipes (stdin/stdout; they get RR_RELAY=pipes)`, quote(r.Server.Relay)))
	}
	r.Server.Relay = "pipes"
	upper := map[string]string{}
	for k := range r.Server.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add(joinPath("server.env", k), "not a valid environment variable name")
		}
		if other, dup := upper[strings.ToUpper(k)]; dup {
			a, b := min(k, other), max(k, other)
			add(joinPath("server.env", b), "same variable as %s once upper-cased", a)
		}
		upper[strings.ToUpper(k)] = k
	}

	if r.Jobs.ShutdownTimeout <= 0 {
		add("jobs.shutdown_timeout", "must be > 0")
	}
	for path, v := range map[string]int{
		"jobs.num_pollers":         r.Jobs.NumPollers,
		"jobs.pipeline_size":       r.Jobs.PipelineSize,
		"jobs.options.parallelism": r.Jobs.Options.Parallelism,
	} {
		if v < 0 {
			add(path, "must be >= 0 (got %d)", v)
		}
	}
	perrs, pwarnings := r.validatePools()
	errs = append(errs, perrs...)
	warnings = append(warnings, pwarnings...)

	for name, p := range r.Jobs.Pipelines {
		if name == "" || strings.ContainsFunc(name, isSpaceOrControl) {
			add(joinPath("jobs.pipelines", name), "a pipeline name must be non-empty without spaces or control characters")
		}
		warnings = append(warnings, p.Warnings...)
	}
	seen := map[string]bool{}
	for i, name := range r.Jobs.Consume {
		path := indexPath("jobs.consume", i)
		switch {
		case seen[name]:
			add(path, "pipeline %s is listed twice", quote(name))
		case !hasPipeline(r, name):
			// As in RoadRunner: a pipeline of that name created later by
			// jobs.Declare is consumed at once.
			warnings = append(warnings, errAt(path, 0, "pipeline %s is not under jobs.pipelines: it is consumed once a jobs.Declare creates it", quote(name)))
		}
		seen[name] = true
	}

	for _, s := range []struct {
		path, addr string
	}{{"status.address", r.Status.Address}, {"metrics.address", r.Metrics.Address}} {
		if s.addr == "" {
			continue
		}
		if reason := checkHostPort(s.addr); reason != "" {
			add(s.path, "%s", reason)
		}
	}
	if c := r.Status.UnavailableStatusCode; c < 400 || c > 599 {
		add("status.unavailable_status_code", "must be an HTTP error status from 400 to 599 (got %d)", c)
	}
	if r.Status.Address != "" && r.Status.Address == r.Metrics.Address {
		add("metrics.address", "must differ from status.address (%s)", r.Status.Address)
	}
	errs = append(errs, r.Dashboard.validate()...)

	for _, e := range fieldErrors(r.AMQP.Validate(), &yaml.Node{}, "amqp") {
		errs = append(errs, e.(*Error))
	}
	for _, e := range fieldErrors(r.SQS.Validate(), &yaml.Node{}, "sqs") {
		errs = append(errs, e.(*Error))
	}
	if r.Kafka != nil {
		r.Kafka.Defaults()
		for _, e := range fieldErrors(r.Kafka.Validate(), &yaml.Node{}, "kafka") {
			errs = append(errs, e.(*Error))
		}
		for _, e := range fieldErrors(r.Kafka.Warnings(), &yaml.Node{}, "kafka") {
			warnings = append(warnings, e.(*Error))
		}
	}
	for _, name := range r.Jobs.PipelineNames() {
		if r.Jobs.Pipelines[name].Driver == DriverKafka && r.Kafka == nil {
			add(joinPath(joinPath("jobs.pipelines", name), "driver"), "kafka needs the top-level kafka: section (brokers)")
		}
	}

	lerrs, lwarnings := r.Logs.validate()
	errs = append(errs, lerrs...)
	warnings = append(warnings, lwarnings...)
	errs = append(errs, r.validateCompat()...)
	warnings = append(warnings, r.ignoredWarnings()...)
	return errs, warnings
}

// hasPipeline reports whether name is a key of jobs.pipelines.
func hasPipeline(r *Root, name string) bool {
	_, ok := r.Jobs.Pipelines[name]
	return ok
}

// checkListen validates an rpc.listen address; "" means valid.
func checkListen(addr string) string {
	switch {
	case strings.HasPrefix(addr, "tcp://"):
		if reason := checkHostPort(strings.TrimPrefix(addr, "tcp://")); reason != "" {
			return reason
		}
		return ""
	case strings.HasPrefix(addr, "unix://"):
		if strings.TrimPrefix(addr, "unix://") == "" {
			return "unix:// needs a socket path, as in unix:///run/pipevisor.sock"
		}
		return ""
	default:
		return fmt.Sprintf("must be tcp://host:port or unix://path (got %s)", quote(addr))
	}
}

// checkHostPort validates host:port with a numeric port 1..65535; "" means
// valid. The host may be empty (all interfaces).
func checkHostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("must be host:port (got %s)", quote(addr))
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Sprintf("bad host %s", quote(host))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port must be a number from 1 to 65535 (got %s)", quote(port))
	}
	return ""
}

// isSpaceOrControl reports characters not allowed in pipeline names.
func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}
