package pool

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// A worker that closes its stdout mid-job and lives on fails that job at
// once (its stdout ended), with no exec_ttl set: it is killed and
// replaced without counting toward the respawn backoff.
func TestClosedStdoutFailsTheJobWithoutExecTTL(t *testing.T) {
	cfg := fakeConfig("close-stdout", 1)
	cfg.steadyAfter = time.Hour
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Exec(ctx, job("closer", "x"))
	var we *WorkerError
	if !errors.As(err, &we) || !errors.Is(err, io.EOF) {
		t.Fatalf("Exec = %v, want a WorkerError saying stdout ended (EOF)", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Exec returned only when its ctx ended: %v", err)
	}
	p.mu.Lock()
	failures := p.failures
	p.mu.Unlock()
	if failures != 0 {
		t.Fatalf("failures = %d, want 0 (the job broke the worker)", failures)
	}
	eventually(t, 5*time.Second, "a replacement worker", func() bool {
		ps := pids(p)
		return len(ps) == 1 && !ps[we.Pid]
	})
}
