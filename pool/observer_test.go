package pool

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// exits records the reasons an Observer is told.
type exits struct {
	mu sync.Mutex
	n  map[ExitReason]int
}

func (e *exits) WorkerExited(r ExitReason) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[ExitReason]int{}
	}
	e.n[r]++
}

func (e *exits) count(r ExitReason) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[r]
}

func (e *exits) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.n {
		n += c
	}
	return n
}

func TestObserverReasons(t *testing.T) {
	cases := []struct {
		name string
		mode string
		n    int
		tune func(c *Config, dir string)
		act  func(t *testing.T, p *Pool)
		want ExitReason
	}{
		{"max_jobs", "ack", 1, func(c *Config, _ string) { c.MaxJobs = 1 }, func(t *testing.T, p *Pool) { run(t, p, job("1", "x")) }, ExitMaxJobs},
		{"reset", "ack", 1, nil, func(t *testing.T, p *Pool) {
			if err := p.Reset(context.Background()); err != nil {
				t.Fatal(err)
			}
		}, ExitReset},
		{"idle_ttl", "ack", 1, func(c *Config, _ string) { c.Supervisor.IdleTTL = 100 * time.Millisecond }, nil, ExitIdleTTL},
		{"ttl", "ack", 1, func(c *Config, _ string) { c.Supervisor.TTL = 100 * time.Millisecond }, nil, ExitTTL},
		{"max_worker_memory", "hog", 1, func(c *Config, _ string) {
			c.Env["FAKEWORKER_MB"] = "64"
			c.Supervisor.MaxWorkerMemory = 32
		}, nil, ExitMemory},
		{"crash", "crash", 1, nil, func(t *testing.T, p *Pool) { _, _ = p.Exec(context.Background(), job("1", "x")) }, ExitCrashed},
		{"exec_ttl", "slow", 1, func(c *Config, _ string) {
			c.Env["FAKEWORKER_DELAY"] = "30s"
			c.Supervisor.ExecTTL = 100 * time.Millisecond
		}, func(t *testing.T, p *Pool) { _, _ = p.Exec(context.Background(), job("1", "x")) }, ExitKilled},
		{"ask-stop", "ask-stop", 2, func(c *Config, dir string) { c.Env["FAKEWORKER_ONCE_FILE"] = filepath.Join(dir, "once") }, func(t *testing.T, p *Pool) { run(t, p, job("1", "x")) }, ExitStopRequested},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := &exits{}
			cfg := fakeConfig(tc.mode, tc.n)
			cfg.Observer = obs
			if tc.tune != nil {
				tc.tune(&cfg, t.TempDir())
			}
			p := start(t, cfg, nil)
			if tc.act != nil {
				tc.act(t, p)
			}
			eventually(t, 5*time.Second, string(tc.want), func() bool { return obs.count(tc.want) >= 1 })
			if n := obs.total(); n != obs.count(tc.want) {
				t.Fatalf("reasons %v, want only %s", obs.n, tc.want)
			}
		})
	}
}

func TestObserverNotToldAboutStop(t *testing.T) {
	obs := &exits{}
	cfg := fakeConfig("ack", 2)
	cfg.Observer = obs
	p := start(t, cfg, nil)
	run(t, p, job("1", "x"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := obs.total(); n != 0 {
		t.Fatalf("Stop reported %d exits: %v", n, obs.n)
	}
}
