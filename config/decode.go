package config

import (
	"encoding"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The strict decoder.
//
// yaml.v3's own KnownFields decoding does not name the path of a problem
// and truncates floats into ints, so the config package walks the node tree
// itself: decodeInto fills a Go value from a node by its yaml tags, rejects
// unknown and duplicate keys at every depth, and reports every problem with
// its dotted path and line. Values already in the target are defaults: a key
// that is absent or null leaves them alone.
//
// Special cases:
//   - time.Duration accepts "1m30s" style strings and integers (seconds), as
//     RoadRunner does; negative durations are rejected.
//   - a []string field tagged "command" also accepts one string, split on
//     whitespace.
//   - a yaml.Node or *yaml.Node field keeps the raw node (decoded later).
//   - a type with a decodeNode method (Pipeline) decodes itself.
//   - a type implementing yaml.Unmarshaler or encoding.TextUnmarshaler is
//     handed to yaml.v3, and its error becomes the reason.
//   - YAML merge keys (<<: *anchor or <<: [*a, *b]) are honoured; keys
//     written next to the merge win, then earlier mappings of a list, and
//     a winning key replaces the merged value whole (no deep merge).

// nodeDecoder is implemented by types that decode themselves.
type nodeDecoder interface {
	decodeNode(n *yaml.Node, path string) []*Error
}

// decodeInto decodes n into v (which must be settable) and returns every
// problem found.
func decodeInto(n *yaml.Node, path string, v reflect.Value) []*Error {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	t := v.Type()
	switch {
	case t == reflect.TypeFor[yaml.Node]():
		v.Set(reflect.ValueOf(*n))
		return nil
	case t == reflect.TypeFor[*yaml.Node]():
		v.Set(reflect.ValueOf(n))
		return nil
	case t.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return decodeInto(n, path, v.Elem())
	case reflect.PointerTo(t).Implements(reflect.TypeFor[nodeDecoder]()):
		return v.Addr().Interface().(nodeDecoder).decodeNode(n, path)
	case t == reflect.TypeFor[time.Duration]():
		return decodeDuration(n, path, v)
	case reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()),
		reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()):
		if err := n.Decode(v.Addr().Interface()); err != nil {
			return []*Error{errAt(path, n.Line, "%s", strings.TrimPrefix(err.Error(), "yaml: "))}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		return decodeStruct(n, path, v)
	case reflect.Map:
		return decodeMap(n, path, v)
	case reflect.Slice:
		return decodeSlice(n, path, v)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			return []*Error{errAt(path, n.Line, "%s", strings.TrimPrefix(err.Error(), "yaml: "))}
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	default:
		if e := decodeScalar(n, path, v); e != nil {
			return []*Error{e}
		}
		return nil
	}
}

// structField is one decodable field of a struct.
type structField struct {
	index []int
	typ   reflect.Type
}

// structFields returns the fields of t by YAML key, following ",inline"
// embedded structs, plus the keys in declaration order.
func structFields(t reflect.Type) (map[string]structField, []string) {
	fields := map[string]structField{}
	var order []string
	var collect func(t reflect.Type, prefix []int)
	collect = func(t reflect.Type, prefix []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			index := append(append([]int(nil), prefix...), i)
			if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
				collect(f.Type, index)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := fields[name]; !dup {
				order = append(order, name)
			}
			fields[name] = structField{index: index, typ: f.Type}
		}
	}
	collect(t, nil)
	return fields, order
}

// pair is one key/value of a mapping.
type pair struct {
	key, value *yaml.Node
}

// mappingPairs returns the pairs of mapping n with merge keys expanded
// (merged pairs first, so explicit keys override them) and reports
// duplicate explicit keys and malformed merges.
func mappingPairs(n *yaml.Node, path string) ([]pair, []*Error) {
	return mergePairs(n, path, map[*yaml.Node]bool{n: true})
}

// mergePairs is mappingPairs; visited holds the mappings already expanded,
// so a mapping merged twice (or into itself) is expanded once.
func mergePairs(n *yaml.Node, path string, visited map[*yaml.Node]bool) ([]pair, []*Error) {
	var merged, own []pair
	var errs []*Error
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			src := deref(val)
			var srcs []*yaml.Node
			if src.Kind == yaml.SequenceNode {
				// Earlier mappings in the list win: expand them last.
				for i := len(src.Content) - 1; i >= 0; i-- {
					srcs = append(srcs, deref(src.Content[i]))
				}
			} else {
				srcs = []*yaml.Node{src}
			}
			for _, s := range srcs {
				if s.Kind != yaml.MappingNode {
					errs = append(errs, errAt(path, k.Line, "<< must merge a mapping or a list of mappings"))
					continue
				}
				if visited[s] {
					continue
				}
				visited[s] = true
				inner, innerErrs := mergePairs(s, path, visited)
				errs = append(errs, innerErrs...)
				merged = append(merged, inner...)
			}
			continue
		}
		k = deref(k)
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, errAt(path, k.Line, "a key must be a plain value, got a %s", kindName(k)))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			errs = append(errs, errAt(joinPath(path, k.Value), k.Line, "key defined twice (first on line %d)", first))
			continue
		}
		seen[k.Value] = k.Line
		own = append(own, pair{key: k, value: val})
	}
	return lastOfEachKey(append(merged, own...)), errs
}

// lastOfEachKey keeps, for each key, only its last pair: a key written
// next to a merge (or merged from an earlier mapping of a list) replaces
// the merged value whole, as YAML's merge is shallow; decoding both would
// merge nested mappings into each other.
func lastOfEachKey(pairs []pair) []pair {
	last := make(map[string]int, len(pairs))
	for i, p := range pairs {
		last[p.key.Value] = i
	}
	out := pairs[:0]
	for i, p := range pairs {
		if last[p.key.Value] == i {
			out = append(out, p)
		}
	}
	return out
}

// decodeStruct decodes a mapping into a struct by yaml tags.
func decodeStruct(n *yaml.Node, path string, v reflect.Value) []*Error {
	if n.Kind != yaml.MappingNode {
		return []*Error{errAt(path, n.Line, "expected a mapping, got %s", describe(n))}
	}
	fields, order := structFields(v.Type())
	pairs, errs := mappingPairs(n, path)
	for _, p := range pairs {
		key := p.key.Value
		keyPath := joinPath(path, key)
		f, ok := fields[key]
		if !ok {
			errs = append(errs, errAt(keyPath, p.key.Line, "%s", unknownKeyReason(keyPath, key, order)))
			continue
		}
		fv := v.FieldByIndex(f.index)
		val := deref(p.value)
		if key == "command" && f.typ == reflect.TypeFor[[]string]() && val.Kind == yaml.ScalarNode && !isNull(val) {
			fv.Set(reflect.ValueOf(strings.Fields(val.Value)))
			continue
		}
		errs = append(errs, decodeInto(val, keyPath, fv)...)
	}
	return errs
}

// decodeMap decodes a mapping into a Go map, keeping entries already there
// unless the YAML sets them.
func decodeMap(n *yaml.Node, path string, v reflect.Value) []*Error {
	if n.Kind != yaml.MappingNode {
		return []*Error{errAt(path, n.Line, "expected a mapping, got %s", describe(n))}
	}
	t := v.Type()
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	pairs, errs := mappingPairs(n, path)
	for _, p := range pairs {
		keyPath := joinPath(path, p.key.Value)
		k := reflect.New(t.Key()).Elem()
		if e := decodeScalar(p.key, keyPath, k); e != nil {
			e.Reason = "bad key: " + e.Reason
			errs = append(errs, e)
			continue
		}
		// A partly decoded entry is kept so that cross-checks (such as
		// jobs.consume naming a pipeline) do not report it as missing.
		elem := reflect.New(t.Elem()).Elem()
		errs = append(errs, decodeInto(p.value, keyPath, elem)...)
		v.SetMapIndex(k, elem)
	}
	return errs
}

// decodeSlice decodes a sequence, replacing any default slice.
func decodeSlice(n *yaml.Node, path string, v reflect.Value) []*Error {
	if n.Kind != yaml.SequenceNode {
		return []*Error{errAt(path, n.Line, "expected a list, got %s", describe(n))}
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	var errs []*Error
	for i, c := range n.Content {
		errs = append(errs, decodeInto(c, indexPath(path, i), out.Index(i))...)
	}
	v.Set(out)
	return errs
}

// decodeScalar decodes a scalar into a string, bool, integer or float.
func decodeScalar(n *yaml.Node, path string, v reflect.Value) *Error {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		return errAt(path, n.Line, "expected %s, got %s", article(v.Kind().String()), describe(n))
	}
	tag := n.ShortTag()
	mismatch := func() *Error {
		return errAt(path, n.Line, "cannot unmarshal %s %s into %s", tag, quote(n.Value), v.Kind())
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if tag != "!!bool" || n.Decode(&b) != nil {
			return mismatch()
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if tag != "!!int" {
			return mismatch()
		}
		var i int64
		if n.Decode(&i) != nil || v.OverflowInt(i) {
			return errAt(path, n.Line, "%s is out of range for %s", n.Value, v.Kind())
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if tag != "!!int" {
			return mismatch()
		}
		if strings.HasPrefix(strings.TrimSpace(n.Value), "-") {
			return errAt(path, n.Line, "must be >= 0 (got %s)", n.Value)
		}
		var u uint64
		if n.Decode(&u) != nil || v.OverflowUint(u) {
			return errAt(path, n.Line, "%s is out of range for %s", n.Value, v.Kind())
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		if (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			return mismatch()
		}
		if v.OverflowFloat(f) {
			return errAt(path, n.Line, "%s is out of range for %s", n.Value, v.Kind())
		}
		v.SetFloat(f)
	default:
		return errAt(path, n.Line, "cannot decode into a Go %s (a bug in the config package)", v.Type())
	}
	return nil
}

// decodeDuration accepts "1m30s" style strings and integers (seconds).
func decodeDuration(n *yaml.Node, path string, v reflect.Value) []*Error {
	if n.Kind != yaml.ScalarNode {
		return []*Error{errAt(path, n.Line, "expected a duration, got %s", describe(n))}
	}
	bad := func() []*Error {
		return []*Error{errAt(path, n.Line, "cannot parse %s as a duration (want a number of seconds or a string like \"30s\" or \"1m30s\")", quote(n.Value))}
	}
	var d time.Duration
	s := strings.TrimSpace(n.Value)
	switch tag := n.ShortTag(); {
	case tag == "!!int" || (tag == "!!str" && isDigits(s)):
		var secs int64
		if err := (&yaml.Node{Kind: yaml.ScalarNode, Value: s}).Decode(&secs); err != nil {
			return bad()
		}
		if secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			return []*Error{errAt(path, n.Line, "%s seconds is out of range", s)}
		}
		d = time.Duration(secs) * time.Second
	case tag == "!!str":
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return bad()
		}
	default:
		return bad()
	}
	if d < 0 {
		return []*Error{errAt(path, n.Line, "must be >= 0 (got %s)", n.Value)}
	}
	v.SetInt(int64(d))
	return nil
}

// deref follows aliases (and unwraps a document node).
func deref(n *yaml.Node) *yaml.Node {
	for range 100 {
		switch {
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
}

// isNull reports whether n is an explicit or implicit null ("key:", "~").
func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// kindName names a node kind for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "value"
	default:
		return "node"
	}
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "the string " + quote(n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		default:
			return n.ShortTag() + " " + quote(n.Value)
		}
	default:
		return "nothing"
	}
}

// article prefixes a Go kind name with "a"/"an".
func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}

// quote quotes s for a message, shortening long values.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// isDigits reports whether s is a non-empty run of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// indexPath returns path[i].
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// unknownKeyReason explains an unknown key: typos get a suggestion.
func unknownKeyReason(_, key string, known []string) string {
	reason := "unknown key"
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		reason += " (did you mean " + best + "?)"
	} else if len(known) > 0 {
		reason += " (known keys: " + strings.Join(known, ", ") + ")"
	}
	return reason
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
