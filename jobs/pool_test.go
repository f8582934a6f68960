package jobs

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/internal/fakeworker"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
)

// TestHelperProcess is the fake worker when this test binary is started
// by a pool under test.
func TestHelperProcess(t *testing.T) {
	if mode := os.Getenv(fakeworker.HelperEnv); mode != "" {
		os.Exit(fakeworker.Main(mode))
	}
}

// withPool returns a started manager whose memory pipeline "a" (consumed,
// concurrency 2, max_attempts 2, 10ms backoff) runs on a real pool of two
// fake workers in mode. The pool is stopped after the manager.
func withPool(t *testing.T, mode string, env map[string]string) (*Manager, *memjobs.Queue) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	env[fakeworker.HelperEnv] = mode
	ctx := context.Background()
	p, err := pool.New(ctx, pool.Config{
		Command:         fakeworker.HelperCommand(),
		Env:             env,
		NumWorkers:      2,
		AllocateTimeout: 5 * time.Second,
		DestroyTimeout:  2 * time.Second,
		Supervisor:      pool.Supervisor{WatchTick: 50 * time.Millisecond},
	}, nil)
	if err != nil {
		t.Fatalf("pool.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("pool.Stop: %v", err)
		}
	})
	pc := memPipeline("a")
	pc.Retry = retry.Policy{MaxAttempts: 2, Backoff: retry.Backoff{Initial: 10 * time.Millisecond}}
	var q *memjobs.Queue
	m := New(Config{
		Factory: func(ctx context.Context, p config.Pipeline) (Driver, error) {
			q = memjobs.New(p.Name, *p.Memory, nil)
			return q, nil
		},
		Executor:  p,
		Pipelines: map[string]config.Pipeline{"a": pc},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	if err := m.Start(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	return m, q
}

func TestRealPoolAck(t *testing.T) {
	m, _ := withPool(t, "ack", nil)
	if err := m.Push(context.Background(), jobsFor("a", 200)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "200 acked", func() bool { return stat(t, m, "a").Acked == 200 })
	if s := stat(t, m, "a"); s.Retried+s.Dead != 0 || s.Ready != 0 {
		t.Errorf("Stat = %+v", s)
	}
}

func TestRealPoolFailuresEndDead(t *testing.T) {
	for _, tt := range []struct{ mode, reason string }{
		{"error-frame", "job failed on purpose"},
		{"crash", "crashed"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			m, q := withPool(t, tt.mode, nil)
			if err := m.Push(context.Background(), jobsFor("a", 1)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "dead", func() bool { return stat(t, m, "a").Dead == 1 })
			if s := stat(t, m, "a"); s.Retried != 1 || s.Acked != 0 {
				t.Errorf("Stat = %+v, want 1 retry then dead", s)
			}
			dead := q.Dead()
			if len(dead) != 1 || dead[0].Attempts != 2 || !strings.Contains(dead[0].Reason, tt.reason) {
				t.Errorf("dead list = %+v, want the job after 2 attempts with %q", dead, tt.reason)
			}
		})
	}
}

func TestRealPoolShutdownReleases(t *testing.T) {
	m, q := withPool(t, "slow", map[string]string{"FAKEWORKER_DELAY": "30s"})
	if err := m.Push(context.Background(), jobsFor("a", 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 running", func() bool { return stat(t, m, "a").Active == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %v with a 100ms grace period", took)
	}
	s, _ := q.Stat(context.Background())
	if s.Ready != 3 || s.Active != 0 || len(q.Dead()) != 0 {
		t.Errorf("queue after Stop = %+v, dead %d: want all 3 jobs back, none dead", s, len(q.Dead()))
	}
}
