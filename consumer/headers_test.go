package consumer

import (
	"slices"
	"testing"
)

func TestMergeHeaders(t *testing.T) {
	base := map[string][]string{"a": {"1"}, "b": {"2", "3"}}
	over := map[string][]string{"a": {"9"}, "c": {"x"}}
	m := MergeHeaders(base, over)
	if len(m) != 3 || !slices.Equal(m["a"], []string{"9"}) || !slices.Equal(m["b"], []string{"2", "3"}) || !slices.Equal(m["c"], []string{"x"}) {
		t.Errorf("merge = %v", m)
	}
	if len(base) != 2 || !slices.Equal(base["a"], []string{"1"}) {
		t.Error("merge changed its base")
	}
	over["c"][0] = "changed"
	if m["c"][0] != "x" {
		t.Error("the result shares over's values")
	}
	if got := MergeHeaders(base, nil); len(got) != 2 || !slices.Equal(got["a"], []string{"1"}) {
		t.Errorf("merge with nothing = %v, want base", got)
	}
	if got := MergeHeaders(nil, map[string][]string{"k": {"v"}}); !slices.Equal(got["k"], []string{"v"}) {
		t.Errorf("merge into nil = %v", got)
	}
}
