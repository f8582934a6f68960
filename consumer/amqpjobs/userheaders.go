package amqpjobs

import (
	"encoding/json"
	"unicode/utf8"
)

// decodeUserHeaders decodes rr_headers, the JSON object of string arrays
// Publish writes (and RoadRunner's producers), and reports whether it is
// one. The common shape (plain strings without escapes) is read by hand,
// which costs a fraction of encoding/json; anything else, escapes
// included, goes to json.Unmarshal, so the result is always what
// json.Unmarshal into a map[string][]string gives (nil for "null").
func decodeUserHeaders(b []byte) (map[string][]string, bool) {
	if m, ok := scanUserHeaders(b); ok {
		return m, true
	}
	var m map[string][]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, false
	}
	return m, true
}

// scanUserHeaders is the hand-written reader of decodeUserHeaders. It
// gives up (false) on anything but an object of arrays of plain strings.
func scanUserHeaders(b []byte) (map[string][]string, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	m := map[string][]string{}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, skipSpace(b, i+1) == len(b)
	}
	for {
		k, j, ok := scanString(b, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) || b[i] != '[' {
			return nil, false
		}
		vs := []string{}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			i++
		} else {
			for {
				v, j, ok := scanString(b, i)
				if !ok {
					return nil, false
				}
				vs = append(vs, v)
				i = skipSpace(b, j)
				if i >= len(b) {
					return nil, false
				}
				if b[i] == ']' {
					i++
					break
				}
				if b[i] != ',' {
					return nil, false
				}
				i = skipSpace(b, i+1)
			}
		}
		m[k] = vs
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false
		}
		if b[i] == '}' {
			return m, skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return nil, false
		}
		i = skipSpace(b, i+1)
	}
}

// scanString reads a JSON string at b[i] that has no escapes, no control
// characters and valid UTF-8, and returns it and the index after it.
func scanString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			if !utf8.Valid(s) {
				return "", 0, false
			}
			return string(s), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// skipSpace returns the index of the first non-whitespace byte at or
// after i (JSON whitespace).
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
