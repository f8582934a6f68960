package config

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// PipelineFromDeclare builds a Pipeline from the flat map that RoadRunner's
// jobs.Declare RPC carries, with exactly the checks a jobs.pipelines entry
// in a file gets.
//
// Keys:
//   - name (required), driver (required), priority: as in RoadRunner.
//   - retry: a JSON object, as the retry: section of a file
//     ({"max_attempts":5,"backoff":{"initial":"2s"}}).
//   - dead_letter, concurrency: as in a file.
//   - every other key is a key of the driver's config (prefetch, queue,
//     ...). A value starting with "{" or "[" is parsed as JSON (nested
//     values such as kafka producer_options or amqp queue_headers); other
//     values are typed as an unquoted YAML value would be ("10" is a
//     number, "true" a boolean). An empty value means "use the default".
//
// Values are not ${VAR}-expanded: they come from a producer, not from the
// operator. Errors name the key as sent ("prefetch", "retry.max_attempts")
// and carry no line. Concurrency is 0 when the map has no "concurrency":
// the caller should use the pool's worker count then.
func PipelineFromDeclare(m map[string]string) (Pipeline, error) {
	var errs []*Error
	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	cfg := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	add := func(to *yaml.Node, key string, val *yaml.Node) {
		to.Content = append(to.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
	}

	name := m["name"]
	if name == "" {
		errs = append(errs, errAt("name", 0, "required"))
	} else if strings.ContainsFunc(name, isSpaceOrControl) {
		errs = append(errs, errAt("name", 0, "a pipeline name must not contain spaces or control characters"))
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
		case "driver", "dead_letter":
			add(root, k, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v})
		case "priority", "concurrency":
			add(root, k, plainScalar(v))
		case "retry":
			n, err := declaredJSON(k, v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			add(root, k, n)
		default:
			n := plainScalar(v)
			if t := strings.TrimSpace(v); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
				var err *Error
				if n, err = declaredJSON(k, v); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			if k == "wait_time" && m["driver"] == DriverSQS {
				// RoadRunner's Declare names sqs wait_time_seconds "wait_time".
				k = "wait_time_seconds"
			}
			add(cfg, k, n)
		}
	}
	add(root, "config", cfg)

	var p Pipeline
	errs = append(errs, decodePipeline(root, "", "", &p)...)
	p.Name = name
	if len(errs) > 0 {
		return Pipeline{}, joinErrors(errs)
	}
	return p, nil
}

// plainScalar is an unquoted YAML value: typed by its text.
func plainScalar(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: v}
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
