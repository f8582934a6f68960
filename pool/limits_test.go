package pool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/internal/fakeworker"
)

func TestMaxJobsRecycles(t *testing.T) {
	cfg := fakeConfig("ack", 1)
	cfg.MaxJobs = 2
	p := start(t, cfg, nil)
	first := pids(p)
	run(t, p, job("1", "x"))
	run(t, p, job("2", "x"))
	run(t, p, job("3", "x"))
	if now := pids(p); fmt.Sprint(now) == fmt.Sprint(first) {
		t.Fatalf("worker not recycled after max_jobs: %v", now)
	}
}

func TestSupervisorLimits(t *testing.T) {
	t.Run("idle_ttl", func(t *testing.T) {
		cfg := fakeConfig("ack", 1)
		cfg.Supervisor.IdleTTL = 150 * time.Millisecond
		p := start(t, cfg, nil)
		first := pids(p)
		eventually(t, 5*time.Second, "idle worker replaced", func() bool {
			now := pids(p)
			return len(now) == 1 && fmt.Sprint(now) != fmt.Sprint(first) && readyCount(p) == 1
		})
	})
	t.Run("ttl does not kill a busy worker", func(t *testing.T) {
		cfg := fakeConfig("slow", 1)
		cfg.Env["FAKEWORKER_DELAY"] = "500ms"
		cfg.Supervisor.TTL = 100 * time.Millisecond
		p := start(t, cfg, nil)
		time.Sleep(20 * time.Millisecond)
		for range 2 {
			if out := run(t, p, job("1", "x")); string(out.Body) != fakeworker.AckBody {
				t.Fatalf("reply %q", out.Body)
			}
		}
	})
	t.Run("max_worker_memory", func(t *testing.T) {
		cfg := fakeConfig("hog", 1)
		cfg.Env["FAKEWORKER_MB"] = "96"
		cfg.Env["FAKEWORKER_LOG"] = filepath.Join(t.TempDir(), "starts")
		cfg.Supervisor.MaxWorkerMemory = 48
		p := start(t, cfg, nil)
		if rss := p.Workers()[0].RSS; rss < 48<<20 {
			t.Fatalf("hog worker RSS %d", rss)
		}
		eventually(t, 5*time.Second, "the hog replaced", func() bool { return lines(t, cfg.Env["FAKEWORKER_LOG"]) >= 2 })
	})
	t.Run("max_worker_memory through a shell wrapper", func(t *testing.T) {
		cfg := fakeConfig("hog", 1)
		// "; true" keeps sh as the parent: the pool's pid is sh's.
		cfg.Command = append([]string{"sh", "-c", `"$0" "$@"; true`}, cfg.Command...)
		cfg.Env["FAKEWORKER_MB"] = "96"
		cfg.Env["FAKEWORKER_LOG"] = filepath.Join(t.TempDir(), "starts")
		cfg.Supervisor.MaxWorkerMemory = 48
		p := start(t, cfg, nil)
		w := p.Workers()[0]
		if own := readRSS(w.Pid); own >= 48<<20 {
			t.Fatalf("the wrapper itself holds %d bytes: the test needs a small parent", own)
		}
		if w.RSS < 96<<20 {
			t.Fatalf("worker RSS %d, want the hog child's 96 MB counted", w.RSS)
		}
		eventually(t, 5*time.Second, "the hog replaced", func() bool { return lines(t, cfg.Env["FAKEWORKER_LOG"]) >= 2 })
	})
	t.Run("max_worker_memory leaves small workers alone", func(t *testing.T) {
		cfg := fakeConfig("ack", 1)
		cfg.Supervisor.MaxWorkerMemory = 512
		p := start(t, cfg, nil)
		first := pids(p)
		time.Sleep(300 * time.Millisecond)
		if now := pids(p); fmt.Sprint(now) != fmt.Sprint(first) {
			t.Fatalf("worker replaced under the memory limit")
		}
	})
}

func TestWorkersShowsCurrentJob(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Env["FAKEWORKER_DELAY"] = "400ms"
	p := start(t, cfg, nil)
	var wg sync.WaitGroup
	sent := time.Now()
	wg.Go(func() { run(t, p, job("job-42", "x")) })
	eventually(t, 2*time.Second, "the job to show", func() bool {
		ws := p.Workers()
		return len(ws) == 1 && ws[0].State == "working" && ws[0].CurrentJob == "job-42"
	})
	if since := p.Workers()[0].CurrentJobSince; since.Before(sent) || since.After(time.Now()) {
		t.Fatalf("CurrentJobSince %v, want between %v and now", since, sent)
	}
	wg.Wait()
	if ws := p.Workers(); ws[0].CurrentJob != "" || !ws[0].CurrentJobSince.IsZero() || ws[0].Jobs != 1 {
		t.Fatalf("after the job: %+v", ws[0])
	}
}

func TestResetReplacesEveryWorkerWithoutLosingJobs(t *testing.T) {
	cfg := fakeConfig("slow", 2)
	cfg.Env["FAKEWORKER_DELAY"] = "20ms"
	p := start(t, cfg, nil)
	before := pids(p)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done int
	var errs []error
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := p.Exec(context.Background(), job("x", "x"))
				mu.Lock()
				done++
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	err := p.Reset(context.Background())
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d jobs failed during reset, first: %v", len(errs), done, errs[0])
	}
	after := pids(p)
	if len(after) != 2 {
		t.Fatalf("%d workers after reset", len(after))
	}
	for pid := range after {
		if before[pid] {
			t.Fatalf("worker %d survived the reset", pid)
		}
	}
}

// A reset whose first replacement fails to start (new code that does not
// boot) stops there with that worker's error and keeps the old workers.
func TestResetGivesUpWhenReplacementsFail(t *testing.T) {
	cfg := fakeConfig("ack", 1)
	cfg.Env["FAKEWORKER_BOOT_ONCE_FILE"] = filepath.Join(t.TempDir(), "booted")
	p := start(t, cfg, nil)
	before := pids(p)
	err := p.Reset(context.Background())
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not start") ||
		!strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("Reset: %v, want the replacement's start error with what it printed", err)
	}
	if after := pids(p); !maps.Equal(after, before) {
		t.Fatalf("workers %v after a failed reset, want the old ones %v", after, before)
	}
	for i := range 4 {
		run(t, p, job(strconv.Itoa(i), "x"))
	}
}

func TestResetAfterStop(t *testing.T) {
	p := start(t, fakeConfig("ack", 1), nil)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustBe(t, p.Reset(context.Background()), ErrClosed)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStop(t *testing.T) {
	t.Run("waits for running jobs", func(t *testing.T) {
		cfg := fakeConfig("slow", 2)
		cfg.Env["FAKEWORKER_DELAY"] = "300ms"
		p := start(t, cfg, nil)
		var wg sync.WaitGroup
		var jobErr error
		wg.Go(func() { _, jobErr = p.Exec(context.Background(), job("1", "x")) })
		eventually(t, 2*time.Second, "the job to start", func() bool { return readyCount(p) == 1 })
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if jobErr != nil {
			t.Fatalf("running job: %v", jobErr)
		}
		if _, err := p.Exec(context.Background(), job("2", "x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Exec after Stop: %v", err)
		}
		if len(p.Workers()) != 0 {
			t.Fatalf("workers after Stop: %+v", p.Workers())
		}
	})
	t.Run("kills workers that ignore stop", func(t *testing.T) {
		cfg := fakeConfig("ignore-stop", 2)
		cfg.DestroyTimeout = 300 * time.Millisecond
		p := start(t, cfg, nil)
		t0 := time.Now()
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > 3*time.Second {
			t.Fatalf("Stop took %v", d)
		}
	})
	t.Run("kills a job past destroy_timeout", func(t *testing.T) {
		cfg := fakeConfig("slow", 1)
		cfg.Env["FAKEWORKER_DELAY"] = "30s"
		cfg.DestroyTimeout = 200 * time.Millisecond
		p := start(t, cfg, nil)
		var wg sync.WaitGroup
		var jobErr error
		wg.Go(func() { _, jobErr = p.Exec(context.Background(), job("1", "x")) })
		eventually(t, 2*time.Second, "the job to start", func() bool { return readyCount(p) == 0 })
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		mustBe(t, jobErr, ErrClosed)
	})
	t.Run("waiting Exec gets ErrClosed", func(t *testing.T) {
		cfg := fakeConfig("slow", 1)
		cfg.Env["FAKEWORKER_DELAY"] = "300ms"
		p := start(t, cfg, nil)
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = p.Exec(context.Background(), job("1", "x")) })
		eventually(t, 2*time.Second, "the job to start", func() bool { return readyCount(p) == 0 })
		var waitErr error
		wg.Go(func() { _, waitErr = p.Exec(context.Background(), job("2", "x")) })
		eventually(t, 2*time.Second, "a waiter", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.waiters) == 1
		})
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		mustBe(t, waitErr, ErrClosed)
	})
}

// TestExecTTLCountsFromEachJob: exec_ttl bounds each job from its own
// start. Back-to-back jobs that together run far past exec_ttl all
// succeed, and a job that overruns after them is still cut off in time.
func TestExecTTLCountsFromEachJob(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Supervisor.ExecTTL = 500 * time.Millisecond
	p := start(t, cfg, nil)
	for i := range 12 { // 1.2 s in all, past two exec_ttl periods
		if _, err := p.Exec(context.Background(), job(strconv.Itoa(i), "100ms")); err != nil {
			t.Fatalf("job %d of 100ms under exec_ttl 500ms: %v", i, err)
		}
	}
	t0 := time.Now()
	_, err := p.Exec(context.Background(), job("late", "30s"))
	mustBe(t, err, ErrExecTimeout)
	if d := time.Since(t0); d < 450*time.Millisecond || d > 5*time.Second {
		t.Fatalf("a 30s job under exec_ttl 500ms ended after %v", d)
	}
}

// A worker that exits on its own while idle after serving a while is
// replaced without growing the respawn backoff; one that dies young
// counts as a failure.
func TestIdleExitCountsAsFailureOnlyWhenYoung(t *testing.T) {
	for _, tc := range []struct {
		name   string
		steady time.Duration
		failed bool
	}{
		{"steady worker", 50 * time.Millisecond, false},
		{"young worker", time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fakeConfig("exit-idle", 1)
			cfg.Env["FAKEWORKER_DELAY"] = "150ms"
			cfg.Env["FAKEWORKER_LOG"] = filepath.Join(t.TempDir(), "starts")
			cfg.steadyAfter = tc.steady
			p := start(t, cfg, nil)
			eventually(t, 10*time.Second, "three workers started", func() bool { return lines(t, cfg.Env["FAKEWORKER_LOG"]) >= 3 })
			p.mu.Lock()
			failures := p.failures
			p.mu.Unlock()
			if (failures > 0) != tc.failed {
				t.Errorf("failures = %d after idle exits, want failed = %v", failures, tc.failed)
			}
		})
	}
}

// A worker that runs jobs and then exits with status 0 on its own (an
// app's max-jobs guard) is no failure: its replacement starts without
// backoff, however young it was.
func TestCleanExitAfterJobsIsNoFailure(t *testing.T) {
	cfg := fakeConfig("die-after", 1)
	cfg.Env["FAKEWORKER_N"] = "2"
	cfg.Env["FAKEWORKER_LOG"] = filepath.Join(t.TempDir(), "starts")
	cfg.steadyAfter = time.Minute
	p := start(t, cfg, nil)
	for i := range 6 {
		run(t, p, job(fmt.Sprint(i), "x"))
		p.mu.Lock()
		failures := p.failures
		p.mu.Unlock()
		if failures != 0 {
			t.Fatalf("after job %d: failures = %d, want 0", i, failures)
		}
	}
	eventually(t, 5*time.Second, "the fourth worker", func() bool { return lines(t, cfg.Env["FAKEWORKER_LOG"]) >= 4 })
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failures != 0 {
		t.Errorf("failures = %d after clean exits, want 0", p.failures)
	}
}
