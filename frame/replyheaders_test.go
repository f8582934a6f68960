package frame

import (
	"errors"
	"reflect"
	"testing"
)

// TestParseReplyHeaderShapes: the headers of a REQUEUE or legacy fail()
// reply survive in every shape a RoadRunner PHP SDK writes them.
func TestParseReplyHeaderShapes(t *testing.T) {
	for _, tt := range []struct {
		name, headers string
		want          map[string][]string
	}{
		{"absent", ``, nil},
		{"null", `,"headers":null`, nil},
		{"empty PHP array as list", `,"headers":[]`, nil},
		{"empty object", `,"headers":{}`, nil},
		{"strings", `,"headers":{"attempts":["3"],"x-tenant":["a","b"]}`,
			map[string][]string{"attempts": {"3"}, "x-tenant": {"a", "b"}}},
		{"numbers and booleans as PHP casts them", `,"headers":{"attempts":[3],"ratio":[1.5,-2e3],"flags":[true,false,null]}`,
			map[string][]string{"attempts": {"3"}, "ratio": {"1.5", "-2e3"}, "flags": {"1", "", ""}}},
		{"empty value list", `,"headers":{"x-empty":[]}`, map[string][]string{"x-empty": {}}},
		{"single scalar value", `,"headers":{"attempts":4,"name":"x"}`, map[string][]string{"attempts": {"4"}, "name": {"x"}}},
		{"PHP list with holes keeps order", `,"headers":{"x":{"2":"c","0":"a"}}`, map[string][]string{"x": {"c", "a"}}},
		{"nested value as JSON text", `,"headers":{"x":[[1, 2],{"k": "v"}]}`, map[string][]string{"x": {"[1,2]", `{"k":"v"}`}}},
		{"RoadRunner protocol document: a list of maps", `,"headers":[{"test":["1","2","3"]},{"other":["x"]}]`,
			map[string][]string{"test": {"1", "2", "3"}, "other": {"x"}}},
		{"PHP array keyed 0..n-1 written as a list", `,"headers":[["a"],["b","c"]]`,
			map[string][]string{"0": {"a"}, "1": {"b", "c"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"type":1,"data":{"message":"m","requeue":true,"delay_seconds":2` + tt.headers + `}}`
			r, err := ParseReply([]byte(body))
			if err != nil {
				t.Fatalf("ParseReply(%s): %v", body, err)
			}
			want := Reply{Type: ReplyError, Data: ReplyData{Message: "m", Requeue: true, DelaySeconds: 2, Headers: tt.want}}
			if !reflect.DeepEqual(r, want) {
				t.Errorf("ParseReply(%s) = %#v, want %#v", body, r, want)
			}
		})
	}
}

func TestParseReplyBadHeaders(t *testing.T) {
	for _, h := range []string{`"x"`, `3`, `true`, `["x"]`, `[1]`, `[{"a":["1"]},"x"]`} {
		body := `{"type":4,"data":{"message":"m","headers":` + h + `}}`
		if r, err := ParseReply([]byte(body)); !errors.Is(err, ErrBadReply) {
			t.Errorf("ParseReply(%s) = %+v, %v; want ErrBadReply", body, r, err)
		}
	}
}
