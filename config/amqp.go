package config

import (
	"reflect"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
)

// decodeAMQP decodes an amqp pipeline's config in either of RoadRunner's
// formats into p.AMQP (see decodeDriver for the contract):
//   - version absent, 0 or 1: the flat keys of amqpjobs.Config;
//   - version 2: exchange: and queue: mappings (amqpjobs.ConfigV2),
//     flattened onto the same Config, so both mean the same to the driver.
//
// Mixing the formats is an error naming the key: a flat-only key in a
// version 2 config says where version 2 writes it, and an exchange: or
// queue: mapping without version: 2 says to add it. Errors of a version
// 2 config name its own keys (queue.routing_key, not routing_key).
func decodeAMQP(node *yaml.Node, path string, p *Pipeline) []error {
	version, err := amqpVersion(node, path)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if version != 2 {
		for _, k := range []string{"exchange", "queue"} {
			if v := findKey(node, k); v != nil && deref(v).Kind == yaml.MappingNode {
				errs = append(errs, errAt(joinPath(path, k), lookupLine(node, k),
					"a mapping here is RoadRunner's version 2 format: add version: 2 to this config"))
			}
		}
		p.AMQP = &amqpjobs.Config{Priority: p.Priority}
		if len(errs) > 0 {
			// The rest would only report what follows from the mix.
			p.AMQP.Defaults()
			return errs
		}
		errs = append(errs, decodeWithPriority(node, path, p.AMQP, &p.AMQP.Priority, p)...)
		p.Warnings = append(p.Warnings, requeueOnFailWarning(p.AMQP, node, path, "requeue_on_fail")...)
		return errs
	}

	node, warnings := withoutIgnoredKeys(node, path)
	node, negWarnings := withoutNegativeSeconds(node, path, []string{"redial_timeout"})
	warnings = append(warnings, negWarnings...)
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], deref(node.Content[i+1])
		switch v2, flat := amqpjobs.V2Key(k.Value); {
		case (k.Value == "exchange" || k.Value == "queue") && v.Kind != yaml.MappingNode && !isNull(v):
			errs = append(errs, errAt(joinPath(path, k.Value), k.Line,
				"with version: 2, %s is a mapping (%s); a plain name is the version 1 format", k.Value, v2Fields(k.Value)))
		case flat && k.Value != "exchange" && k.Value != "queue":
			errs = append(errs, errAt(joinPath(path, k.Value), k.Line,
				"a version 1 key in a version 2 config: write it as %s (the two formats do not mix)", v2))
		}
	}
	v := amqpjobs.ConfigV2{Priority: p.Priority}
	for _, e := range decodeInto(node, path, reflect.ValueOf(&v).Elem()) {
		errs = append(errs, e)
	}
	cfg := v.Flat()
	cfg.Defaults()
	for _, fe := range cfg.Clamp() {
		warnings = append(warnings, errAt(joinPath(path, fe.Key), lookupLine(node, fe.Key), "%s", fe.Reason))
	}
	for _, leaf := range fieldErrors(cfg.Validate(), &yaml.Node{}, "") {
		e := leaf.(*Error)
		key, _ := amqpjobs.V2Key(e.Path)
		errs = append(errs, errAt(joinPath(path, key), lookupLine(node, key), "%s", e.Reason))
	}
	p.AMQP = &cfg
	p.Priority = cfg.Priority
	p.Warnings = append(p.Warnings, warnings...)
	p.Warnings = append(p.Warnings, requeueOnFailWarning(p.AMQP, node, path, "queue.requeue_on_fail")...)
	return errs
}

// amqpVersion returns the config's version key (0 when absent), or an
// error when it is not 0, 1 or 2.
func amqpVersion(node *yaml.Node, path string) (int, *Error) {
	n := findKey(node, "version")
	if n == nil || isNull(deref(n)) {
		return 0, nil
	}
	var version int
	if e := decodeScalar(n, joinPath(path, "version"), reflect.ValueOf(&version).Elem()); e != nil {
		return 0, e
	}
	if !slices.Contains([]int{0, 1, 2}, version) {
		return 0, errAt(joinPath(path, "version"), n.Line, "must be 1 (flat keys) or 2 (exchange: and queue: mappings), got %d", version)
	}
	return version, nil
}

// v2Fields lists the keys of a version 2 exchange: or queue: mapping.
func v2Fields(section string) string {
	if section == "exchange" {
		return "name, type, durable, auto_delete, declare"
	}
	return "name, routing_key, durable, auto_delete, exclusive, delete_on_stop, multiple_ack, requeue_on_fail, consumer_id, headers, declare"
}

// requeueOnFailWarning warns that requeue_on_fail (written at key) has no
// effect: the pipeline's retry policy settles failed jobs.
func requeueOnFailWarning(c *amqpjobs.Config, node *yaml.Node, path, key string) []*Error {
	if !c.RequeueOnFail {
		return nil
	}
	return []*Error{errAt(joinPath(path, key), lookupLine(node, key),
		"ignored: a failed job (error, crash, timeout) is retried by the pipeline's retry policy, then dead-lettered")}
}
