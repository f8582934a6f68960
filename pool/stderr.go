package pool

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	// tailLines is how many stderr lines a worker keeps for WorkerError.
	tailLines = 20
	// maxTailLine truncates a kept line.
	maxTailLine = 512
	// maxLine flushes a line without a newline once it is this long.
	maxLine = 64 << 10
)

// stderrLog is a worker's stderr: os/exec copies the pipe into Write, which
// logs each line with the worker's pid and keeps the last tailLines lines.
type stderrLog struct {
	log *slog.Logger
	pid atomic.Int64

	mu      sync.Mutex
	partial []byte
	ring    [tailLines]string
	n       int // lines stored, up to tailLines
	next    int // ring index of the next line
}

// Write implements io.Writer for exec.Cmd.Stderr.
func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	start := 0
	for {
		i := bytes.IndexByte(s.partial[start:], '\n')
		if i < 0 {
			break
		}
		s.line(s.partial[start : start+i])
		start += i + 1
	}
	if len(s.partial)-start >= maxLine {
		s.line(s.partial[start:])
		start = len(s.partial)
	}
	s.partial = s.partial[:copy(s.partial, s.partial[start:])]
	if len(s.partial) == 0 && cap(s.partial) > 2*maxLine {
		s.partial = nil // release a buffer grown by one huge line
	}
	return len(p), nil
}

// stderrLevel is the level a worker's stderr line is logged at: PHP's
// fatal and parse errors and a Python traceback's first line at error,
// PHP warnings at warn, anything else at info.
func stderrLevel(line string) slog.Level {
	l := strings.TrimPrefix(line, "PHP ")
	switch {
	case strings.HasPrefix(l, "Fatal error:"), strings.HasPrefix(l, "Parse error:"),
		strings.HasPrefix(line, "Traceback (most recent call last):"):
		return slog.LevelError
	case strings.HasPrefix(l, "Warning:"):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// flush logs an unterminated last line; called once the process is gone.
func (s *stderrLog) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 {
		s.line(s.partial)
		s.partial = nil
	}
}

func (s *stderrLog) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	if len(b) == 0 {
		return
	}
	line := string(b)
	s.log.LogAttrs(context.Background(), stderrLevel(line), line, slog.Int64("pid", s.pid.Load()))
	if len(line) > maxTailLine {
		line = line[:maxTailLine] + "…"
	}
	s.ring[s.next] = line
	s.next = (s.next + 1) % tailLines
	s.n = min(s.n+1, tailLines)
}

// tail returns the kept lines, oldest first.
func (s *stderrLog) tail() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, s.n)
	for i := range s.n {
		out = append(out, s.ring[(s.next-s.n+i+tailLines)%tailLines])
	}
	return out
}
