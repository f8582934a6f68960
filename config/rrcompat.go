package config

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
)

// RoadRunner compatibility: what a .rr.yaml written for RoadRunner may
// hold besides the sections Pipevisor runs, and the RoadRunner keys that
// are accepted and ignored.

// foreignSections are top-level sections of RoadRunner plugins that
// Pipevisor does not run. A file may hold them (it can serve RoadRunner
// too): each is a warning naming it, and its content is not read.
var foreignSections = []string{
	"app_logger", "beanstalk", "broadcast", "centrifuge", "fileserver",
	"google_pub_sub", "googlepubsub", "grpc", "gzip", "headers", "http", "informer",
	"kv", "lock", "memcached", "memory", "nats", "nsq", "prometheus", "proxy_ip_parser",
	"redis", "reload", "resetter", "send", "service", "static", "tcp", "temporal",
	"websockets",
}

// redactedDefaultAMQP is amqpjobs.DefaultAddr without its password.
const redactedDefaultAMQP = "amqp://guest:xxxxx@127.0.0.1:5672/"

// foreignDrivers are RoadRunner jobs drivers Pipevisor does not ship: a
// pipeline naming one is an error that says so.
var foreignDrivers = []string{"beanstalk", "google_pub_sub", "googlepubsub", "gps", "nats", "nsq"}

// withoutForeignSections returns top without the sections of
// foreignSections (top itself when it has none) and one warning per
// section removed.
func withoutForeignSections(top *yaml.Node) (*yaml.Node, []*Error) {
	if top.Kind != yaml.MappingNode {
		return top, nil
	}
	var warnings []*Error
	kept := make([]*yaml.Node, 0, len(top.Content))
	for i := 0; i+1 < len(top.Content); i += 2 {
		k := top.Content[i]
		if k.Kind == yaml.ScalarNode && slices.Contains(foreignSections, k.Value) {
			warnings = append(warnings, errAt(k.Value, k.Line,
				"ignored: section of RoadRunner's %s plugin, which Pipevisor does not run", k.Value))
			continue
		}
		kept = append(kept, k, top.Content[i+1])
	}
	if len(warnings) == 0 {
		return top, nil
	}
	out := *top
	out.Content = kept
	return &out, warnings
}

// validateCompat checks the RoadRunner sections that have rules of their
// own (server.on_init, otel).
func (r *Root) validateCompat() []*Error {
	errs := r.OTel.checkErrors()
	if o := r.Server.OnInit; o != nil {
		if len(o.Command) == 0 {
			errs = append(errs, errAt("server.on_init.command", 0, "required: the command to run before the workers start"))
		}
		for i, arg := range o.Command {
			if arg == "" {
				errs = append(errs, errAt(indexPath("server.on_init.command", i), 0, "must not be empty"))
			}
		}
		for k := range o.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				errs = append(errs, errAt(joinPath("server.on_init.env", k), 0, "not a valid environment variable name"))
			}
		}
	}
	return errs
}

// ignoredWarnings returns a warning for each RoadRunner key that is set
// and has no effect here, saying why.
func (r *Root) ignoredWarnings() []*Error {
	var w []*Error
	warn := func(set bool, path, reason string) {
		if set {
			w = append(w, errAt(path, 0, "%s", reason))
		}
	}
	const asUser = "ignored: workers run as the supervisor's user (run the supervisor as the wanted user, e.g. systemd User=)"
	warn(r.Server.RelayTimeout != 0, "server.relay_timeout", "ignored: workers talk over pipes, which have no relay timeout")
	warn(r.Server.User != "", "server.user", asUser)
	warn(r.Server.Group != "", "server.group", asUser)
	if o := r.Server.OnInit; o != nil {
		warn(o.User != "", "server.on_init.user", "ignored: the command runs as the supervisor's user")
	}

	j := r.Jobs
	warn(j.NumPollers != 0, "jobs.num_pollers", "ignored: each pipeline fetches only as many jobs as it has free slots (concurrency)")
	warn(j.PipelineSize != 0, "jobs.pipeline_size", "ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch")
	warn(j.Options.Parallelism != 0, "jobs.options.parallelism", "ignored: the pipelines of jobs.consume all start at boot")
	warn(j.Pool.Debug, "jobs.pool.debug", "ignored: workers are long-lived (max_jobs: 1 replaces a worker after each job)")
	warn(j.Pool.MaxQueueSize != 0, "jobs.pool.max_queue_size", "ignored: a pipeline takes no job from its broker without a free slot, so nothing queues for workers")
	warn(j.Pool.StreamTimeout != 0, "jobs.pool.stream_timeout", "ignored: jobs have no streamed responses")

	warn(len(r.Metrics.Collect) > 0, "metrics.collect", "ignored: application metrics declared here are not collected")
	warn(r.Status.CheckTimeout != 0, "status.check_timeout", "ignored: /health and /ready answer from the supervisor's own state without waiting")
	warn(r.Endure != nil, "endure", "ignored: RoadRunner's plugin container settings (the shutdown grace period is jobs.shutdown_timeout; the systemd watchdog follows WatchdogSec)")
	if b := r.BoltDB; b != nil {
		warn(b.File != "", "boltdb.file", "ignored: the key of RoadRunner's boltdb kv storage, which Pipevisor does not run; a jobs pipeline names its file in its config.file")
		warn(b.Interval != 0, "boltdb.interval", "ignored: the key of RoadRunner's boltdb kv storage (TTL checks), which Pipevisor does not run")
	}
	w = append(w, r.OTel.warnings()...)

	return w
}

// defaultAMQPWarnings warns, when the file has no amqp: section, that
// amqp pipelines connect to the default address (RoadRunner refuses to
// start without the section).
func (r *Root) defaultAMQPWarnings() []*Error {
	for _, name := range r.Jobs.PipelineNames() {
		if r.Jobs.Pipelines[name].Driver == DriverAMQP {
			return []*Error{errAt(joinPath(joinPath("jobs.pipelines", name), "driver"), 0,
				"no amqp: section: amqp pipelines connect to %s", redactedDefaultAMQP)}
		}
	}
	return nil
}

// clamper is implemented by driver configs that bring out-of-range values
// into range (as RoadRunner accepts them) and say what they changed.
type clamper interface {
	Clamp() []*consumer.FieldError
}

// clampWarnings runs cfg's Clamp, when it has one, and returns its
// changes as warnings under path.
func clampWarnings(cfg any, node *yaml.Node, path string) []*Error {
	c, ok := cfg.(clamper)
	if !ok {
		return nil
	}
	var out []*Error
	for _, fe := range c.Clamp() {
		out = append(out, errAt(joinPath(path, fe.Key), lookupLine(node, fe.Key), "%s", fe.Reason))
	}
	return out
}

// ignoredDriverKeys are RoadRunner keys written in a pipeline's config
// that no RoadRunner driver reads either; they are dropped with a
// warning before the driver's config is decoded.
var ignoredDriverKeys = map[string]string{
	"pipeline_size": "ignored: RoadRunner's jobs.pipeline_size, which no driver reads in a pipeline's config",
}

// withoutIgnoredKeys returns node without the keys of ignoredDriverKeys
// (node itself when it has none) and a warning for each.
func withoutIgnoredKeys(node *yaml.Node, path string) (*yaml.Node, []*Error) {
	if node.Kind != yaml.MappingNode {
		return node, nil
	}
	var warnings []*Error
	kept := make([]*yaml.Node, 0, len(node.Content))
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		if reason, ok := ignoredDriverKeys[k.Value]; ok {
			warnings = append(warnings, errAt(joinPath(path, k.Value), k.Line, "%s", reason))
			continue
		}
		kept = append(kept, k, node.Content[i+1])
	}
	if warnings == nil {
		return node, nil
	}
	out := *node
	out.Content = kept
	return &out, warnings
}

// sqsCompat applies RoadRunner's sqs keys that concern the pipeline
// rather than the driver: max_messages_in_flight becomes the pipeline's
// concurrency when that is not written (both cap the jobs in flight),
// and retain_failed_jobs next to a dead_letter is a warning.
func sqsCompat(node *yaml.Node, path string, p *Pipeline) []error {
	if p.SQS == nil {
		return nil
	}
	if n := p.SQS.MaxMessagesInFlight; n > 0 && p.Concurrency == 0 {
		p.Concurrency = n
	} else if n > 0 {
		p.Warnings = append(p.Warnings, errAt(joinPath(path, "max_messages_in_flight"), lookupLine(node, "max_messages_in_flight"),
			"ignored: the pipeline's concurrency (%d) caps the jobs in flight", p.Concurrency))
	}
	if p.SQS.RetainFailedJobs && p.DeadLetter != "" {
		p.Warnings = append(p.Warnings, errAt(joinPath(path, "retain_failed_jobs"), lookupLine(node, "retain_failed_jobs"),
			"ignored: dead jobs go to dead_letter %s", quote(p.DeadLetter)))
	}
	return nil
}

// zeroIsDefault reports whether cfg is a driver config whose keys
// RoadRunner reads with 0 meaning "the default" (memory, boltdb, amqp and sqs:
// prefetch, priority, redial_timeout, wait_time_seconds, ...): Defaults
// runs again after decoding so that an explicit 0 gets the default.
func zeroIsDefault(cfg any) bool {
	switch cfg.(type) {
	case *memjobs.Config, *boltjobs.Config, *amqpjobs.Config, *sqsjobs.Config:
		return true
	}
	return false
}

// negativeSeconds returns the keys of cfg that RoadRunner reads as whole
// seconds and takes below 0 as 0 (sqs) or as the default (amqp).
func negativeSeconds(cfg any) []string {
	switch cfg.(type) {
	case *amqpjobs.Config:
		return []string{"redial_timeout"}
	case *sqsjobs.Config:
		return []string{"visibility_timeout", "wait_time_seconds", "error_visibility_timeout"}
	}
	return nil
}

// withoutNegativeSeconds returns node with each of keys whose value is a
// negative integer set to 0 (node itself when none is), and a warning for
// each: RoadRunner accepts them that way.
func withoutNegativeSeconds(node *yaml.Node, path string, keys []string) (*yaml.Node, []*Error) {
	if node.Kind != yaml.MappingNode || len(keys) == 0 {
		return node, nil
	}
	var warnings []*Error
	var content []*yaml.Node
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], deref(node.Content[i+1])
		var secs int64
		if !slices.Contains(keys, k.Value) || v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&secs) != nil || secs >= 0 {
			continue
		}
		if content == nil {
			content = slices.Clone(node.Content)
		}
		content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "0", Line: v.Line, Column: v.Column}
		warnings = append(warnings, errAt(joinPath(path, k.Value), k.Line, "%d is below 0: using 0 (the default)", secs))
	}
	if content == nil {
		return node, nil
	}
	out := *node
	out.Content = content
	return &out, warnings
}
