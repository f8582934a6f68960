package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *Error: the configuration was
// read but is not acceptable. Load errors that do not match it come from
// reading the file.
var ErrInvalid = errors.New("config: invalid")

// Error is one problem in a configuration, at a dotted YAML path such as
// "jobs.pipelines.orders.retry.max_attempts" (list items as "jobs.consume[1]").
// Load, Parse and PipelineFromDeclare return every problem they find at once,
// as an errors.Join of *Error values sorted by line and path; use
// errors.As or Errors to get at them.
type Error struct {
	// Path is the dotted YAML path of the offending key; empty for problems
	// with the document as a whole (such as a YAML syntax error).
	Path string
	// Line is the 1-based line in the file, or 0 when unknown (Declare maps).
	Line int
	// Reason says what is wrong, for a human.
	Reason string
}

// Error returns "path: reason", followed by " (line N)" when the line is
// known, or "line N: reason" when there is no path.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Path != "":
		b.WriteString(e.Path)
		b.WriteString(": ")
		b.WriteString(e.Reason)
		if e.Line > 0 {
			fmt.Fprintf(&b, " (line %d)", e.Line)
		}
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: %s", e.Line, e.Reason)
	default:
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Errors returns the *Error values inside err (as returned by Load, Parse or
// PipelineFromDeclare), in the order they were reported. It returns nil when
// err holds none.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *Error:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// errAt builds an *Error.
func errAt(path string, line int, format string, args ...any) *Error {
	return &Error{Path: path, Line: line, Reason: fmt.Sprintf(format, args...)}
}

// joinErrors drops follow-on errors (see dropFollowOn), sorts the rest by
// line then path (errors without a line go last, in path order) and joins
// them; nil when errs is empty.
func joinErrors(errs []*Error) error {
	errs = dropFollowOn(errs)
	if len(errs) == 0 {
		return nil
	}
	sortErrors(errs)
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// sortErrors sorts errs by line then path; errors without a line go last,
// in path order.
func sortErrors(errs []*Error) {
	slices.SortStableFunc(errs, func(a, b *Error) int {
		switch {
		case a.Line == b.Line:
			return strings.Compare(a.Path, b.Path)
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		default:
			return a.Line - b.Line
		}
	})
}

// joinPath appends key to a dotted path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// dropFollowOn keeps, in the order errs were found, only the first error at
// each path and drops errors below a path that already failed: once
// "server.command" could not be decoded, "server.command: required" adds
// nothing, and neither does anything under a pipeline that is not a
// mapping. errs must be in the order the checks ran (decoding first).
func dropFollowOn(errs []*Error) []*Error {
	out := errs[:0:0]
	for _, e := range errs {
		followOn := false
		for _, prev := range out {
			if e.Path != "" && (e.Path == prev.Path || strings.HasPrefix(e.Path, prev.Path+".") || strings.HasPrefix(e.Path, prev.Path+"[")) {
				followOn = true
				break
			}
		}
		if !followOn {
			out = append(out, e)
		}
	}
	return out
}
