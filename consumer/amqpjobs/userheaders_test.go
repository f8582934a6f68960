package amqpjobs

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestDecodeUserHeadersMatchesJSON: decodeUserHeaders gives what
// json.Unmarshal gives, on the fast path and on every fallback.
func TestDecodeUserHeadersMatchesJSON(t *testing.T) {
	inputs := []string{
		`{}`, ` { } `, `{"a":["1"]}`, `{"x-trace":["abc"],"b":["1","2"]}`,
		"{ \"a\" : [ \"1\" , \"2\" ] ,\n\t\"b\":[] }", `{"a":[]}`, `{"a":["1"],"a":["2"]}`,
		`{"a":[""]}`, `{"é":["ü€"]}`, `{"a":["x\"y"]}`, `{"a":["\u00e9"]}`, `{"a":["l1\nl2"]}`,
		`null`, `{"a":null}`, `{"a":"1"}`, `{"a":[1]}`, `{"a":["1",]}`, `{"a":["1"],}`,
		`{"a":["1"]} x`, `{"a":["1"]`, `{"a":["1"`, `{"a"`, `{`, ``, `[]`, `{"a":["1"]}{}`,
		"{\"a\":[\"\xff\"]}", "{\"a\":[\"\x01\"]}", `{"a":[ "1" ] , "b" : [ "2" ]}`,
	}
	for _, in := range inputs {
		var want map[string][]string
		werr := json.Unmarshal([]byte(in), &want)
		got, ok := decodeUserHeaders([]byte(in))
		if ok != (werr == nil) {
			t.Errorf("%q: ok = %v, json.Unmarshal error %v", in, ok, werr)
			continue
		}
		if ok && !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %#v, json.Unmarshal gives %#v", in, got, want)
		}
	}
}

func BenchmarkDecodeUserHeaders(b *testing.B) {
	in := []byte(`{"x-trace":["abc"],"tenant":["42"]}`)
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, ok := decodeUserHeaders(in); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			var m map[string][]string
			if err := json.Unmarshal(in, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
