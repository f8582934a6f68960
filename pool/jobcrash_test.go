package pool

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A worker that a job crashes, or makes write garbage, is replaced at
// once: job-induced deaths are no start failures, so a burst of such jobs
// does not put the pool into respawn backoff, and the pool keeps its size.
func TestJobInducedDeathsDoNotBackOff(t *testing.T) {
	for _, mode := range []string{"crash", "garbage"} {
		t.Run(mode, func(t *testing.T) {
			cfg := fakeConfig(mode, 2)
			cfg.steadyAfter = time.Hour // every worker is young
			p := start(t, cfg, nil)
			for i := range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := p.Exec(ctx, job("bad", "x"))
				cancel()
				var we *WorkerError
				if !errors.As(err, &we) {
					t.Fatalf("job %d: %v, want a WorkerError", i, err)
				}
				p.mu.Lock()
				failures := p.failures
				p.mu.Unlock()
				if failures != 0 {
					t.Fatalf("after job %d: failures = %d, want 0 (the job killed the worker)", i, failures)
				}
			}
			eventually(t, 5*time.Second, "the pool back at 2 workers", func() bool {
				return len(pids(p)) == 2
			})
		})
	}
}
