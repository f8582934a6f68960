package consumer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateReason(t *testing.T) {
	if got := TruncateReason("short"); got != "short" {
		t.Errorf("short reason = %q", got)
	}
	long := strings.Repeat("é", MaxDeadReason) + "the real cause"
	got := TruncateReason(long)
	if len(got) > MaxDeadReason || !utf8.ValidString(got) {
		t.Fatalf("truncated to %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	if !strings.HasSuffix(got, "the real cause") || !strings.HasPrefix(got, "éé") || !strings.Contains(got, " … ") {
		t.Errorf("truncated reason lost its head or tail: %q...%q", got[:10], got[len(got)-20:])
	}
}

func TestDeadSelectionHas(t *testing.T) {
	s := DeadSelection{IDs: []string{"a", "b"}}
	if !s.Has("a") || s.Has("c") {
		t.Error("ids selection")
	}
	if !(DeadSelection{All: true}).Has("anything") {
		t.Error("all selection")
	}
}
