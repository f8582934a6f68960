package tests

import (
	"io"
	"sync"
)

// syncWriter makes a buffer safe for the two copy goroutines of exec.Cmd and
// the test reading it.
type syncWriter struct {
	mu sync.Mutex
	w  interface {
		io.Writer
		String() string
	}
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
