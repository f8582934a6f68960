package config

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// IgnoredKey is a jobs.Declare key that is accepted but changes nothing
// here (RoadRunner gives it no meaning either, or none we can give it).
// The caller logs it.
type IgnoredKey struct {
	// Key is the key as sent ("consume_all", "producer_options.transaction_timeout").
	Key string
	// Reason says why it has no effect.
	Reason string
}

// Declared is a parsed jobs.Declare map.
type Declared struct {
	Pipeline Pipeline
	// Ignored lists the keys accepted without effect, sorted by key.
	Ignored []IgnoredKey
}

// PipelineFromDeclare is ParseDeclare without the list of ignored keys.
func PipelineFromDeclare(m map[string]string) (Pipeline, error) {
	d, err := ParseDeclare(m)
	return d.Pipeline, err
}

// ParseDeclare builds a Pipeline from the flat map that RoadRunner's
// jobs.Declare RPC carries, with exactly the checks a jobs.pipelines entry
// in a file gets. It accepts what every version of RoadRunner's PHP SDK
// (spiral/roadrunner-jobs 2.x to 4.x) sends for MemoryCreateInfo,
// AMQPCreateInfo, KafkaCreateInfo and SQSCreateInfo, and the keys
// RoadRunner's drivers read from a declared pipeline.
//
// Keys:
//   - name (required), driver (required), priority: as in RoadRunner.
//     Without name, queue names the pipeline (SDK 2.0.0 and 2.0.1 sent
//     the name as "queue"; RoadRunner reads it so too).
//   - retry: a JSON object, as the retry: section of a file
//     ({"max_attempts":5,"backoff":{"initial":"2s"}}).
//   - dead_letter, concurrency, pool: as in a file.
//   - every other key is a key of the driver's config (prefetch, queue,
//     ...), translated where RoadRunner's declare names differ from its
//     file names (see declareRuleFor). A value starting with "{" or "[" is
//     parsed as JSON (nested values such as kafka producer_options or
//     amqp queue_headers); other values are typed as an unquoted YAML
//     value would be ("10" is a number, "true" a boolean). An empty value
//     and an empty JSON list or object ("", "[]", "{}": PHP's
//     json_encode writes an empty array as "[]") mean "not set": the
//     default, which for lists and maps is empty. A JSON null inside a
//     nested value means "not set" too.
//
// Values are not ${VAR}-expanded: they come from a producer, not from the
// operator. Errors name the key as sent ("prefetch", "retry.max_attempts")
// and carry no line. Concurrency is 0 when the map has no "concurrency":
// the caller should use the pool's worker count then.
func ParseDeclare(m map[string]string) (Declared, error) {
	b := &declareBuilder{
		root:   &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"},
		cfg:    &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"},
		driver: m["driver"],
	}

	name, nameFromQueue := m["name"], false
	if name == "" && m["queue"] != "" {
		name, nameFromQueue = m["queue"], true
	}
	if name == "" {
		b.errs = append(b.errs, errAt("name", 0, "required"))
	} else if strings.ContainsFunc(name, isSpaceOrControl) {
		b.errs = append(b.errs, errAt("name", 0, "a pipeline name must not contain spaces or control characters"))
	}

	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		switch k {
		case "name":
		case "driver", "dead_letter", "pool":
			setKey(b.root, k, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v})
		case "priority", "concurrency":
			setKey(b.root, k, plainScalar(v))
		case "retry":
			if n := b.value(k, v); n != nil {
				setKey(b.root, k, n)
			}
		default:
			if k == "queue" && nameFromQueue && (b.driver == DriverMemory || b.driver == DriverKafka) {
				continue // it was the pipeline's name, not a driver key
			}
			if r := declareRuleFor(b.driver, k); r != nil {
				r(b, k, v, m)
				continue
			}
			if n := b.value(k, v); n != nil {
				setKey(b.cfg, k, n)
			}
		}
	}
	setKey(b.root, "config", b.cfg)

	var p Pipeline
	b.errs = append(b.errs, decodePipeline(b.root, "", "", &p)...)
	p.Name = name
	slices.SortFunc(b.ignored, func(a, c IgnoredKey) int { return strings.Compare(a.Key, c.Key) })
	if len(b.errs) > 0 {
		return Declared{Ignored: b.ignored}, joinErrors(b.errs)
	}
	return Declared{Pipeline: p, Ignored: b.ignored}, nil
}

// declareBuilder collects the YAML tree, errors and ignored keys of one
// Declare map.
type declareBuilder struct {
	root, cfg *yaml.Node
	driver    string
	errs      []*Error
	ignored   []IgnoredKey
}

// value types a Declare value (see ParseDeclare). It returns nil for a
// value that means "not set" and for a bad one (recording the error).
func (b *declareBuilder) value(key, v string) *yaml.Node {
	t := strings.TrimSpace(v)
	if t == "" || t == "[]" || t == "{}" {
		return nil
	}
	if !strings.HasPrefix(t, "{") && !strings.HasPrefix(t, "[") {
		return plainScalar(v)
	}
	n, err := declaredJSON(key, v)
	if err != nil {
		b.errs = append(b.errs, err)
		return nil
	}
	dropNulls(n)
	return n
}

// ignore records a key accepted without effect.
func (b *declareBuilder) ignore(key, reason string) {
	b.ignored = append(b.ignored, IgnoredKey{Key: key, Reason: reason})
}

// plainScalar is an unquoted YAML value: typed by its text.
func plainScalar(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: v}
}

// strScalar is a string scalar.
func strScalar(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
}

// setKey sets key in mapping n to val, replacing an earlier value.
func setKey(n *yaml.Node, key string, val *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content[i+1] = val
			return
		}
	}
	n.Content = append(n.Content, strScalar(key), val)
}

// dropNulls removes the null-valued keys of every mapping under n.
func dropNulls(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		out := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !isNull(n.Content[i+1]) {
				out = append(out, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = out
	}
	for _, c := range n.Content {
		dropNulls(c)
	}
}

// declaredJSON parses a JSON (or YAML flow) value sent in a Declare map.
// Line numbers inside it are cleared: they would be lines of the string.
func declaredJSON(key, v string) (*yaml.Node, *Error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(v), &doc); err != nil {
		return nil, errAt(key, 0, "not valid JSON: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if hasAnchors(&doc) {
		// A producer's value must not make the decoder expand aliases.
		return nil, errAt(key, 0, "YAML anchors and aliases are not allowed here")
	}
	n := deref(&doc)
	clearLines(n)
	return n, nil
}

// hasAnchors reports whether the tree under n uses anchors or aliases.
func hasAnchors(n *yaml.Node) bool {
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return true
	}
	for _, c := range n.Content {
		if hasAnchors(c) {
			return true
		}
	}
	return false
}

// clearLines zeroes the line numbers in a tree.
func clearLines(n *yaml.Node) {
	n.Line, n.Column = 0, 0
	for _, c := range n.Content {
		clearLines(c)
	}
}
