package pool

import (
	"context"
	"errors"
	"strconv"
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

// Bytes a worker writes to stdout after its reply are not read as the
// next job's reply: that worker is retired before it is given another
// job, and every job succeeds.
func TestStrayOutputAfterAReplyChargesNoJob(t *testing.T) {
	cfg := fakeConfig("junk-after", 1)
	p := start(t, cfg, nil)
	seen := map[int]bool{}
	for i := range 5 {
		out := run(t, p, job(strconv.Itoa(i), "body"))
		if string(out.Body) != "body" {
			t.Fatalf("job %d replied %q", i, out.Body)
		}
		for _, w := range p.Workers() {
			seen[w.Pid] = true
		}
		// Let the stray line reach the pipe before the next job.
		eventually(t, 2*time.Second, "the stray output to arrive", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, w := range p.idle {
				if !w.proc.strayOutput(true) {
					return false
				}
			}
			return true
		})
	}
	if len(seen) < 5 {
		t.Fatalf("%d distinct workers ran 5 jobs, want each retired after its stray output", len(seen))
	}
}
