package pool

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/pipevisor/pipevisor/frame"
)

// barePool builds a Pool the way New does, without starting workers.
func barePool(cfg Config) *Pool {
	cfg = cfg.withDefaults()
	p := &Pool{cfg: cfg, log: slog.New(slog.DiscardHandler), env: buildEnv(nil), cmdline: "x",
		changed: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{}),
		killNow: make(chan struct{}), stopped: make(chan struct{})}
	p.launch = p.launchProc
	p.life, p.endLife = context.WithCancel(context.Background())
	return p
}

// TestHandshakeOfAWorkerThatExitsAtOnceQuotesIt: a worker that prints a
// PHP error and exits at once always fails with frame.ErrBadCommand (the
// reaper used to close the pipes of a worker still in its handshake, which
// then sometimes read a closed file instead).
func TestHandshakeOfAWorkerThatExitsAtOnceQuotesIt(t *testing.T) {
	p := barePool(Config{Command: []string{"/bin/sh", "-c", `echo "Could not open input file: /app/wrker.php"`}})
	var mu sync.Mutex
	bad, total := 0, 0
	var last error
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				_, err := p.spawn(context.Background())
				mu.Lock()
				total++
				if !errors.Is(err, frame.ErrBadCommand) {
					bad++
					last = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	p.wg.Wait()
	if bad > 0 {
		t.Fatalf("%d of %d spawns did not report ErrBadCommand; last: %v", bad, total, last)
	}
}
