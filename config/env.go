package config

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Environment expansion.
//
// Every scalar value in the file (never a key, never a comment) may contain
//
//	${VAR}           the value of VAR; an error naming VAR when it is not set
//	${VAR:-default}  the value of VAR, or default when VAR is unset or empty
//	$${              a literal "${" (no expansion)
//
// An unset ${VAR} without a default is an error rather than an empty string:
// a forgotten export then fails `supervisor validate` instead of silently
// starting with an empty queue name or address. Write ${VAR:-} to allow an
// empty value. A lone "$" (as in "php -r '$x=1;'") is left alone.
//
// Expansion works on the parsed YAML tree, so a value can not inject YAML
// structure: an unquoted ${PORT} that expands to 8080 is an integer, a quoted
// "${PORT}" stays a string, and a value with ": " in it is just a string.

// lookupFunc returns the value of an environment variable and whether it is
// set (os.LookupEnv).
type lookupFunc func(string) (string, bool)

// expandTree expands ${...} references in every scalar value under n, in
// place. path is the dotted path of n, used in errors.
func expandTree(n *yaml.Node, path string, lookup lookupFunc) []*Error {
	var errs []*Error
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			errs = append(errs, expandTree(c, path, lookup)...)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, expandTree(n.Content[i+1], joinPath(path, n.Content[i].Value), lookup)...)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, expandTree(c, indexPath(path, i), lookup)...)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return nil
		}
		v, reasons := expandString(n.Value, lookup)
		if len(reasons) > 0 {
			errs = append(errs, errAt(path, n.Line, "%s", strings.Join(reasons, "; ")))
		}
		if len(reasons) == 0 && v != n.Value {
			n.Value = v
			// A plain (unquoted, untagged) scalar is typed by what it
			// expands to, as if the value had been written in the file.
			if n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				n.Tag = ""
			}
		}
	}
	return errs
}

// expandString expands s and returns the result, or the reasons it could
// not (one per bad reference).
func expandString(s string, lookup lookupFunc) (string, []string) {
	var b strings.Builder
	var reasons []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), reasons
		}
		if i > 0 && s[i-1] == '$' {
			// "$${" is a literal "${".
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := closingBrace(s[i:])
		if end < 0 {
			reasons = append(reasons, "unterminated ${ in "+quote(s[i:]))
			return "", reasons
		}
		ref := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validVarName(name) {
			reasons = append(reasons, "bad environment reference ${"+ref+"}: want ${NAME} or ${NAME:-default}")
			continue
		}
		v, ok := lookup(name)
		switch {
		case hasDef && v == "":
			// The default may hold references itself: ${A:-${B}}.
			d, rs := expandString(def, lookup)
			reasons = append(reasons, rs...)
			b.WriteString(d)
		case ok:
			b.WriteString(v)
		default:
			reasons = append(reasons, "environment variable "+name+" is not set (write ${"+name+":-} to allow an empty value)")
		}
	}
}

// closingBrace returns the index in s (which starts with "${") of the "}"
// that closes it, counting nested "${", or -1.
func closingBrace(s string) int {
	depth := 0
	for j := 0; j < len(s); j++ {
		switch {
		case strings.HasPrefix(s[j:], "${"):
			depth++
			j++
		case s[j] == '}':
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// validVarName reports whether s is a shell-style variable name.
func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
