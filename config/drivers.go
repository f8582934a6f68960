package config

import (
	"reflect"

	"github.com/pipevisor/pipevisor/consumer/boltjobs"
	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
	"gopkg.in/yaml.v3"
)

// decodeDriver decodes the config: mapping of a pipeline for its driver and
// stores the result in p (the matching driver pointer and p.Priority).
//
// node is the config mapping (an empty mapping when the key is absent) and
// path its dotted YAML path. On entry p.Priority is the pipeline-level
// priority, or 0 when none was written; use it as the default of the
// driver's own priority key, and set p.Priority to the final value.
// p.DeadLetter is set and may be checked here.
//
// To add a driver: add a field to Pipeline (AMQP *amqpjobs.Config, ...),
// then a case below that stores the driver's Config, seeded with the
// pipeline priority, and decodes it with decodeWithPriority (which applies
// Defaults, decodes strictly, runs Validate and carries the priority back). Return every problem;
// *Error values are kept as they are, any other error is reported at path.
func decodeDriver(driver string, node *yaml.Node, path string, p *Pipeline) []error {
	switch driver {
	case DriverMemory:
		p.Memory = &memjobs.Config{Priority: p.Priority}
		errs := decodeWithPriority(node, path, p.Memory, &p.Memory.Priority, p)
		if p.DeadLetter != "" {
			errs = append(errs, errAt(pathBeside(path, "dead_letter"), 0,
				"not supported by the memory driver: dead jobs stay in the pipeline's dead list"))
		}
		return errs
	case DriverBoltDB:
		p.BoltDB = &boltjobs.Config{Priority: p.Priority}
		errs := decodeWithPriority(node, path, p.BoltDB, &p.BoltDB.Priority, p)
		if p.DeadLetter != "" {
			errs = append(errs, errAt(pathBeside(path, "dead_letter"), 0,
				"not supported by the boltdb driver: dead jobs stay in the pipeline's dead bucket in its file"))
		}
		return errs
	case DriverAMQP:
		// dead_letter is a queue name, declared by the driver when missing.
		// RoadRunner's version 2 format is decoded by decodeAMQP.
		return decodeAMQP(node, path, p)
	case DriverKafka:
		// dead_letter is a topic name; empty means dead jobs are logged and dropped.
		p.Kafka = &kafkajobs.Config{Priority: p.Priority}
		return decodeWithPriority(node, path, p.Kafka, &p.Kafka.Priority, p)
	case DriverSQS:
		// dead_letter is a queue name or URL, created by the driver when
		// missing; empty leaves dead jobs to the queue's redrive policy.
		p.SQS = &sqsjobs.Config{Priority: p.Priority}
		errs := decodeWithPriority(node, path, p.SQS, &p.SQS.Priority, p)
		return append(errs, sqsCompat(node, path, p)...)
	default:
		return []error{errAt(path, node.Line, "driver %s: not built into this binary", driver)}
	}
}

// decodeWithPriority runs decodeDriverConfig on cfg and makes the driver's
// priority (*prio, a field of cfg) the pipeline's.
func decodeWithPriority(node *yaml.Node, path string, cfg driverConfig, prio *int64, p *Pipeline) []error {
	errs, warnings := decodeDriverConfigWarn(node, path, cfg)
	p.Warnings = append(p.Warnings, warnings...)
	p.Priority = *prio
	if w, ok := cfg.(driverWarner); ok && len(errs) == 0 {
		for _, e := range fieldErrors(w.Warnings(), node, path) {
			p.Warnings = append(p.Warnings, e.(*Error))
		}
	}
	return errs
}

// driverWarner is implemented by driver configs that accept settings they
// ignore or replace; Warnings returns *consumer.FieldError values joined
// by errors.Join, nil when there are none (called after Validate).
type driverWarner interface {
	Warnings() error
}

// driverConfig is what every driver's Config provides.
type driverConfig interface {
	// Defaults fills zero fields with defaults.
	Defaults()
	// Validate returns *consumer.FieldError values joined by errors.Join.
	Validate() error
}

// decodeDriverConfig applies cfg.Defaults, decodes node over it strictly
// (unknown keys, wrong types) and runs cfg.Validate, reporting its field
// errors under path with their lines. Validate runs even after decoding
// errors (a key that failed to decode keeps its default), so every problem
// is reported at once; a key already reported is not reported twice. cfg
// must be a pointer to a struct with yaml tags.
func decodeDriverConfig(node *yaml.Node, path string, cfg driverConfig) []error {
	errs, _ := decodeDriverConfigWarn(node, path, cfg)
	return errs
}

// decodeDriverConfigWarn is decodeDriverConfig that also drops RoadRunner
// keys no driver reads (withoutIgnoredKeys) and runs cfg's Clamp, when it
// has one, before Validate; it returns their warnings under path.
func decodeDriverConfigWarn(node *yaml.Node, path string, cfg driverConfig) ([]error, []*Error) {
	cfg.Defaults()
	node, warnings := withoutIgnoredKeys(node, path)
	node, negWarnings := withoutNegativeSeconds(node, path, negativeSeconds(cfg))
	warnings = append(warnings, negWarnings...)
	var out []error
	seen := map[string]bool{}
	for _, e := range decodeInto(node, path, reflect.ValueOf(cfg).Elem()) {
		out = append(out, e)
		seen[e.Path] = true
	}
	if zeroIsDefault(cfg) {
		cfg.Defaults()
	}
	warnings = append(warnings, clampWarnings(cfg, node, path)...)
	for _, err := range fieldErrors(cfg.Validate(), node, path) {
		if e, ok := err.(*Error); ok && seen[e.Path] {
			continue
		}
		out = append(out, err)
	}
	return out, warnings
}

// pathBeside returns the path of key next to the last element of path
// ("a.b.config" -> "a.b.key"); for a top-level path (Declare) just key.
func pathBeside(path, key string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '.' {
			return path[:i+1] + key
		}
	}
	return key
}
