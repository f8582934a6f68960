package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestSharedCtxInterruptsEveryJobUnderIt: two jobs running under one ctx
// are both interrupted when it ends, and the pool serves the next job on
// fresh workers.
func TestSharedCtxInterruptsEveryJobUnderIt(t *testing.T) {
	cfg := fakeConfig("slow", 2)
	cfg.Env["FAKEWORKER_DELAY"] = "30s"
	p := start(t, cfg, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	stopErr := errors.New("pipeline stopping")
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = p.Exec(ctx, job("shared", "x")) })
	}
	eventually(t, 5*time.Second, "both jobs to start", func() bool { return readyCount(p) == 0 })
	cancel(stopErr)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("jobs not interrupted within 10s of their ctx ending")
	}
	for i, err := range errs {
		// ErrNoWorker when the ctx ended between taking the worker and
		// writing the job (microseconds); the job was then not sent.
		if !(errors.Is(err, ErrExecTimeout) || errors.Is(err, ErrNoWorker)) || !errors.Is(err, stopErr) {
			t.Errorf("job %d: %v, want ErrExecTimeout with the ctx's cause", i, err)
		}
	}
	eventually(t, 10*time.Second, "two replacements", func() bool { return readyCount(p) == 2 })
}

// TestWatchesDoNotPileUp: an Exec per short-lived ctx (never cancelled
// while a job runs) keeps the pool's registrations bounded, and a
// long-lived ctx still interrupts afterwards.
func TestWatchesDoNotPileUp(t *testing.T) {
	p := start(t, fakeConfig("ack", 1), nil)
	for i := range 3 * maxIdleWatches {
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := p.Exec(ctx, job("1", "x")); err != nil {
			t.Fatalf("exec %d: %v", i, err)
		}
		if i%2 == 0 {
			cancel() // half end after their job, half stay open (until the test ends)
		} else {
			defer cancel()
		}
	}
	p.mu.Lock()
	n := len(p.watches)
	p.mu.Unlock()
	if n > maxIdleWatches+1 {
		t.Errorf("%d watches kept after %d Execs with their own ctx, want at most %d", n, 3*maxIdleWatches, maxIdleWatches+1)
	}
	ws := p.Workers()
	if len(ws) != 1 || ws[0].Jobs != 3*maxIdleWatches {
		t.Errorf("workers = %+v, want one that ran every job", ws)
	}
}
