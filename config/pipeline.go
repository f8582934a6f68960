package config

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
	"github.com/pipevisor/pipevisor/retry"
	"gopkg.in/yaml.v3"
)

// Driver names accepted in jobs.pipelines.<name>.driver.
const (
	DriverMemory = "memory"
	DriverAMQP   = "amqp"
	DriverKafka  = "kafka"
	DriverSQS    = "sqs"
	DriverBoltDB = "boltdb"
)

// Pipeline is one jobs.pipelines.<name> entry (or one jobs.Declare).
//
// YAML keys: driver (required), config (the driver's keys), priority,
// concurrency, retry {max_attempts, backoff {initial, max, multiplier,
// jitter}}, dead_letter. Exactly one of the driver config pointers is set,
// the one named by Driver, with the driver's defaults filled in.
type Pipeline struct {
	// Name is the key under jobs.pipelines (or Declare's "name").
	Name string
	// Driver is one of DriverMemory, DriverBoltDB, DriverAMQP,
	// DriverKafka, DriverSQS.
	Driver string
	// Priority is the pipeline priority (lower is more urgent; default
	// DefaultPriority). It may be written at the pipeline level or, as in
	// RoadRunner, as config.priority; writing both with different values
	// is an error. It equals the driver config's priority.
	Priority int64
	// Concurrency is the number of jobs in flight for this pipeline. Load
	// defaults it to jobs.pool.num_workers; PipelineFromDeclare leaves it
	// 0 when the map has no "concurrency" (use the pool size then).
	Concurrency int
	// Retry is complete (no zero fields standing for defaults);
	// Retry.Configured is true when the pipeline has a retry: section.
	Retry retry.Policy
	// DeadLetter is the driver-specific dead-letter target; empty means
	// the driver's default (the memory driver keeps a dead list).
	DeadLetter string
	// Pool names the worker pool that runs the jobs (a jobs.pools key, or
	// DefaultPool); empty means DefaultPool.
	Pool string

	// Memory is set when Driver is DriverMemory.
	Memory *memjobs.Config
	// BoltDB is set when Driver is DriverBoltDB.
	BoltDB *boltjobs.Config
	// AMQP is set when Driver is DriverAMQP.
	AMQP *amqpjobs.Config
	// Kafka is set when Driver is DriverKafka.
	Kafka *kafkajobs.Config
	// SQS is set when Driver is DriverSQS.
	SQS *sqsjobs.Config

	// Warnings are the driver config's settings that are accepted but
	// ignored or replaced (Load copies them into Root.Warnings; a Declare
	// caller may log them).
	Warnings []*Error
}

// pipelineKeys is the YAML shape of a pipeline, decoded strictly before the
// driver's config is decoded by decodeDriver.
type pipelineKeys struct {
	Driver      string       `yaml:"driver"`
	Config      *yaml.Node   `yaml:"config"`
	Priority    *int64       `yaml:"priority"`
	Concurrency *int         `yaml:"concurrency"`
	Retry       retrySection `yaml:"retry"`
	DeadLetter  string       `yaml:"dead_letter"`
	Pool        string       `yaml:"pool"`
}

// retrySection is a pipeline's retry: key: the policy decoded over
// retry.Defaults(), Configured when the key is there with a value
// (written or merged in; retry: with no value, or ~, is no section).
type retrySection struct{ retry.Policy }

func (r *retrySection) decodeNode(n *yaml.Node, path string) []*Error {
	r.Configured = true
	return decodeStruct(n, path, reflect.ValueOf(&r.Policy).Elem())
}

// decodeNode decodes jobs.pipelines.<name>; Name is set by the caller.
func (p *Pipeline) decodeNode(n *yaml.Node, path string) []*Error {
	return decodePipeline(n, path, joinPath(path, "config"), p)
}

// decodePipeline decodes a pipeline mapping into p. Errors about driver
// config keys are reported under configPath (path.config in a file; the
// top level for Declare, whose driver keys are flat).
func decodePipeline(n *yaml.Node, path, configPath string, p *Pipeline) []*Error {
	keys := pipelineKeys{Retry: retrySection{retry.Defaults()}}
	errs := decodeStruct(n, path, reflect.ValueOf(&keys).Elem())

	p.Driver = keys.Driver
	p.DeadLetter = keys.DeadLetter
	p.Pool = keys.Pool
	p.Retry = keys.Retry.Policy
	errs = append(errs, validateRetry(p.Retry, joinPath(path, "retry"))...)
	if keys.Concurrency != nil {
		p.Concurrency = *keys.Concurrency
		if p.Concurrency < 1 {
			errs = append(errs, errAt(joinPath(path, "concurrency"), 0, "must be >= 1 (got %d)", p.Concurrency))
		}
	}
	if keys.Priority != nil {
		// 0 stands for "not set" towards the driver (and for "inherit the
		// pipeline's priority" on a job), so it can not be written here.
		p.Priority = *keys.Priority
		if p.Priority < 1 {
			errs = append(errs, errAt(joinPath(path, "priority"), 0, "must be >= 1 (got %d)", p.Priority))
		}
	}

	cfg := keys.Config
	if cfg == nil {
		cfg = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	switch {
	case keys.Driver == "":
		errs = append(errs, errAt(joinPath(path, "driver"), 0, "required (one of %s)", strings.Join(driverNames(), ", ")))
		return errs
	case slices.Contains(foreignDrivers, keys.Driver):
		errs = append(errs, errAt(joinPath(path, "driver"), 0, "RoadRunner's %s driver is not shipped with Pipevisor (drivers: %s)", keys.Driver, strings.Join(driverNames(), ", ")))
		return errs
	case !slices.Contains(driverNames(), keys.Driver):
		errs = append(errs, errAt(joinPath(path, "driver"), 0, "unknown driver %s (want one of %s)", quote(keys.Driver), strings.Join(driverNames(), ", ")))
		return errs
	}
	if cfg.Kind != yaml.MappingNode {
		errs = append(errs, errAt(configPath, cfg.Line, "expected a mapping, got %s", describe(cfg)))
		return errs
	}
	if keys.Priority == nil || p.Priority < 1 {
		p.Priority = 0 // decodeDriver: 0 means "not set at the pipeline level"
	}
	for _, err := range decodeDriver(keys.Driver, cfg, configPath, p) {
		var e *Error
		if errors.As(err, &e) {
			errs = append(errs, e)
		} else {
			errs = append(errs, errAt(configPath, cfg.Line, "%s", err.Error()))
		}
	}
	if keys.Priority != nil && *keys.Priority >= 1 && *keys.Priority != p.Priority {
		if v := findKey(cfg, "priority"); v != nil {
			errs = append(errs, errAt(joinPath(path, "priority"), 0, "%d conflicts with %s (%s): write the priority once",
				*keys.Priority, joinPath(configPath, "priority"), v.Value))
		}
	}
	return errs
}

// validateRetry checks a retry policy decoded over retry.Defaults().
// It is stricter than retry.Policy.Validate: an explicit 0 is an
// error here, not "the default", because a user writing
// max_attempts: 0 or initial: 0 does not mean 3 or 1s.
func validateRetry(r retry.Policy, path string) []*Error {
	var errs []*Error
	add := func(key, format string, args ...any) {
		errs = append(errs, errAt(joinPath(path, key), 0, format, args...))
	}
	if r.MaxAttempts < 1 {
		add("max_attempts", "must be >= 1 (1 means no retries; got %d)", r.MaxAttempts)
	}
	b := r.Backoff
	if b.Initial <= 0 {
		add("backoff.initial", "must be > 0")
	}
	if b.Max < b.Initial {
		add("backoff.max", "must be >= backoff.initial (%s), got %s", b.Initial, b.Max)
	}
	if !(b.Multiplier >= 1) || math.IsInf(b.Multiplier, 0) {
		add("backoff.multiplier", "must be a finite number >= 1, got %g", b.Multiplier)
	}
	if !(b.Jitter >= 0 && b.Jitter <= 1) {
		add("backoff.jitter", "must be between 0 and 1, got %g", b.Jitter)
	}
	return errs
}

// fieldErrors turns the error of a driver's Validate into *Error values:
// each *consumer.FieldError gets path prepended and the line of its key in
// node; any other error is reported at path itself.
func fieldErrors(err error, node *yaml.Node, path string) []error {
	if err == nil {
		return nil
	}
	var leaves []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		leaves = append(leaves, err)
	}
	walk(err)
	out := make([]error, 0, len(leaves))
	for _, leaf := range leaves {
		var fe *consumer.FieldError
		if errors.As(leaf, &fe) {
			out = append(out, errAt(joinPath(path, fe.Key), lookupLine(node, fe.Key), "%s", fe.Reason))
			continue
		}
		out = append(out, errAt(path, node.Line, "%s", leaf.Error()))
	}
	return out
}

// findKey returns the key node named key in mapping n, or nil.
func findKey(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// driverNames lists the driver names in the order messages show them.
func driverNames() []string {
	return []string{DriverMemory, DriverBoltDB, DriverAMQP, DriverKafka, DriverSQS}
}
