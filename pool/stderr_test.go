package pool

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStderrLines(t *testing.T) {
	rec := &recorder{}
	s := &stderrLog{log: slog.New(rec)}
	s.pid.Store(42)
	for _, chunk := range []string{"first li", "ne\nsecond\r\n\n", "third"} {
		if n, err := s.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := s.tail(); strings.Join(got, "|") != "first line|second" {
		t.Fatalf("tail before flush = %q", got)
	}
	s.flush()
	if got := s.tail(); strings.Join(got, "|") != "first line|second|third" {
		t.Fatalf("tail after flush = %q", got)
	}
	if len(rec.recs) != 3 || rec.recs[2].Message != "third" {
		t.Fatalf("logged %d records", len(rec.recs))
	}
}

func TestStderrTailKeepsTheLastLines(t *testing.T) {
	s := &stderrLog{log: slog.New(slog.DiscardHandler)}
	for i := range 25 {
		fmt.Fprintf(s, "line %d\n", i)
	}
	got := s.tail()
	if len(got) != tailLines || got[0] != "line 5" || got[tailLines-1] != "line 24" {
		t.Fatalf("tail = %q", got)
	}
	// A line without a newline is cut into pieces, not buffered forever;
	// kept lines are truncated.
	long := strings.Repeat("x", maxLine+10)
	_, _ = s.Write([]byte(long))
	got = s.tail()
	if last := got[len(got)-1]; len(last) > maxTailLine+len("…") || !strings.HasPrefix(last, "xxx") {
		t.Fatalf("long line kept as %d bytes", len(last))
	}
	if len(s.partial) != 0 {
		t.Fatalf("%d bytes still buffered", len(s.partial))
	}
}

// PHP's fatal and parse errors and Python tracebacks are logged at error
// level, PHP warnings at warn, the rest at info.
func TestStderrLevels(t *testing.T) {
	rec := &recorder{}
	s := &stderrLog{log: slog.New(rec)}
	lines := map[string]slog.Level{
		"PHP Fatal error:  Uncaught Error: Call to undefined function f() in /app/w.php:3": slog.LevelError,
		"PHP Parse error:  syntax error, unexpected token \"}\" in /app/w.php on line 9":   slog.LevelError,
		"Fatal error: Allowed memory size of 134217728 bytes exhausted":                    slog.LevelError,
		"Traceback (most recent call last):":                                               slog.LevelError,
		"PHP Warning:  Undefined variable $x in /app/w.php on line 4":                      slog.LevelWarn,
		"processing job 12": slog.LevelInfo,
		"PHP Stack trace:":  slog.LevelInfo,
	}
	for line := range lines {
		fmt.Fprintln(s, line)
	}
	if len(rec.recs) != len(lines) {
		t.Fatalf("logged %d records, want %d", len(rec.recs), len(lines))
	}
	for _, r := range rec.recs {
		if want := lines[r.Message]; r.Level != want {
			t.Errorf("%q logged at %s, want %s", r.Message, r.Level, want)
		}
	}
}
