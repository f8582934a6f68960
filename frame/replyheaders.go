package frame

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// errHeaderShape is returned by decodeReplyHeaders for a "headers" value
// that is no header map in any encoding a worker SDK writes.
var errHeaderShape = errors.New("want an object of header name to list of values")

// decodeReplyHeaders decodes the "headers" of a reply's data (REQUEUE,
// legacy ERROR) in every shape RoadRunner's PHP SDK has written them with
// json_encode, so that the headers a worker set are never lost:
//
//   - absent, null, [] (SDK 2.0 sends its empty header array as a list)
//     or {}: no headers (nil).
//   - an object of name to values, each values entry being a list of
//     strings (SDK 2.9 and 4.x), a list of numbers or booleans (SDK 2.0 to
//     2.8 and 3.0 keep withHeader("n", 2) as the integer 2), an object (a
//     PHP list with holes: its values in order), or a single scalar.
//     Scalars become strings as PHP's (string) cast makes them: numbers as
//     written, true as "1", false and null as "". A nested list or object
//     becomes its JSON text.
//   - a list of such objects (the form RoadRunner's protocol document
//     shows), merged in order; a list element that is itself a list is
//     the header named by its index (PHP writes an array whose keys are
//     exactly 0..n-1 as a list).
//
// Anything else (a scalar, a list holding scalars) is an error.
func decodeReplyHeaders(raw json.RawMessage) (map[string][]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	out := map[string][]string{}
	switch raw[0] {
	case '{':
		if err := addHeaderObject(out, raw); err != nil {
			return nil, err
		}
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
		for i, it := range items {
			it = bytes.TrimSpace(it)
			switch {
			case len(it) > 0 && it[0] == '{':
				if err := addHeaderObject(out, it); err != nil {
					return nil, err
				}
			case len(it) > 0 && it[0] == '[':
				vals, err := headerValues(it)
				if err != nil {
					return nil, fmt.Errorf("header %d: %w", i, err)
				}
				out[strconv.Itoa(i)] = vals
			default:
				return nil, fmt.Errorf("%w, got a list holding %s", errHeaderShape, head(it, 32))
			}
		}
	default:
		return nil, fmt.Errorf("%w, got %s", errHeaderShape, head(raw, 32))
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// addHeaderObject adds the headers of the JSON object obj to out; a name
// already in out is replaced.
func addHeaderObject(out map[string][]string, obj []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return err
	}
	for name, v := range m {
		vals, err := headerValues(v)
		if err != nil {
			return fmt.Errorf("header %q: %w", name, err)
		}
		out[name] = vals
	}
	return nil
}

// headerValues decodes the values of one header: a list, an object (its
// values in document order) or a single scalar; see decodeReplyHeaders.
func headerValues(raw []byte) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errHeaderShape
	}
	switch raw[0] {
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
		vals := make([]string, len(items))
		for i, it := range items {
			s, err := scalarText(it)
			if err != nil {
				return nil, err
			}
			vals[i] = s
		}
		return vals, nil
	case '{':
		dec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := dec.Token(); err != nil { // {
			return nil, err
		}
		var vals []string
		for dec.More() {
			if _, err := dec.Token(); err != nil { // the key
				return nil, err
			}
			var it json.RawMessage
			if err := dec.Decode(&it); err != nil {
				return nil, err
			}
			s, err := scalarText(it)
			if err != nil {
				return nil, err
			}
			vals = append(vals, s)
		}
		return vals, nil
	default:
		s, err := scalarText(raw)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
}

// scalarText is one header value as text: a JSON string unquoted, a number
// as written, true as "1", false and null as "" (PHP's string cast), a
// list or object as its compact JSON text.
func scalarText(raw []byte) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errHeaderShape
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case 't':
		return "1", nil
	case 'f', 'n':
		return "", nil
	case '[', '{':
		var b bytes.Buffer
		err := json.Compact(&b, raw)
		return b.String(), err
	default:
		var n json.Number
		err := json.Unmarshal(raw, &n)
		return n.String(), err
	}
}
