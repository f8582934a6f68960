package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the .rr.yaml at path and returns it decoded, defaulted and
// validated. A file that can not be read is an error wrapping the os error
// (with the path); otherwise see Parse.
func Load(path string) (*Root, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data)
}

// Parse decodes a .rr.yaml document. ${VAR} references expand from the
// process environment first. On failure it returns nil and every problem
// at once: an errors.Join of *Error values (each matches ErrInvalid),
// sorted by line; Errors extracts them.
func Parse(data []byte) (*Root, error) {
	return parse(data, os.LookupEnv)
}

// parse is Parse with the environment lookup as a parameter.
func parse(data []byte, lookup lookupFunc) (*Root, error) {
	top, err := parseDocument(data)
	if err != nil {
		return nil, joinErrors([]*Error{err})
	}

	// The order matters: joinErrors keeps the first error at a path, so
	// a failed ${VAR} hides the decoding error it causes, and a decoding
	// error hides the validation errors that follow from it.
	// Sections of other RoadRunner plugins are neither expanded nor
	// decoded: an unset ${VAR} there is not our problem.
	ours, warnings := withoutForeignSections(top)
	errs := expandTree(ours, "", lookup)
	root := defaultRoot()
	if !isNull(top) {
		errs = append(errs, decodeInto(ours, "", reflect.ValueOf(root).Elem())...)
	}
	root.applyDerivedDefaults()
	verrs, vwarnings := root.validate()
	errs = append(errs, verrs...)
	warnings = append(warnings, vwarnings...)
	if !isNull(top) && findKey(top, "amqp") == nil {
		warnings = append(warnings, root.defaultAMQPWarnings()...)
	}
	for _, e := range append(errs, warnings...) {
		if e.Line == 0 && e.Path != "" {
			e.Line = lookupLine(top, e.Path)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	sortErrors(warnings)
	root.Warnings = warnings
	return root, nil
}

// parseDocument parses data into its single top-level node (a null node
// for an empty document).
func parseDocument(data []byte) (*yaml.Node, *Error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}, nil
		}
		return nil, syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(err)
		}
		return nil, errAt("", extra.Line, "only one YAML document is supported (found a second one after ---)")
	}
	top := deref(&doc)
	if !isNull(top) && top.Kind != yaml.MappingNode {
		return nil, errAt("", top.Line, "the file must be a mapping of sections (version, rpc, server, jobs, ...), got %s", describe(top))
	}
	return top, nil
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into an
// *Error with the line split out.
func syntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, reason, ok := strings.Cut(rest, ": "); ok {
			if line, convErr := strconv.Atoi(num); convErr == nil {
				return errAt("", line, "YAML syntax: %s", reason)
			}
		}
	}
	return errAt("", 0, "YAML syntax: %s", msg)
}

// lookupLine returns the line of the deepest node along a dotted path
// ("jobs.pipelines.orders.retry", "jobs.consume[1]") that exists under n,
// or 0 when not even the first element does. Keys containing dots are
// matched too (the longest key that fits wins).
func lookupLine(n *yaml.Node, path string) int {
	line := 0
	for path != "" {
		n = deref(n)
		switch {
		case n.Kind == yaml.MappingNode:
			var bestKey, bestVal *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if k != "" && (path == k || strings.HasPrefix(path, k+".") || strings.HasPrefix(path, k+"[")) &&
					(bestKey == nil || len(k) > len(bestKey.Value)) {
					bestKey, bestVal = n.Content[i], n.Content[i+1]
				}
			}
			if bestKey == nil {
				return line
			}
			line = bestKey.Line
			n = bestVal
			path = strings.TrimPrefix(path[len(bestKey.Value):], ".")
		case n.Kind == yaml.SequenceNode && strings.HasPrefix(path, "["):
			num, rest, ok := strings.Cut(path[1:], "]")
			i, err := strconv.Atoi(num)
			if !ok || err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
			path = strings.TrimPrefix(rest, ".")
		default:
			return line
		}
	}
	return line
}
