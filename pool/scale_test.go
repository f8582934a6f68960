package pool

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/internal/fakeworker"
)

// scaleRecorder is an Observer that records scaling steps.
type scaleRecorder struct {
	mu    sync.Mutex
	steps []int // +n up, -n down
}

func (r *scaleRecorder) WorkerExited(ExitReason) {}
func (r *scaleRecorder) PoolScaled(up bool, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !up {
		n = -n
	}
	r.steps = append(r.steps, n)
}

func (r *scaleRecorder) get() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.steps...)
}

// execAll runs one job per body at once and returns a channel that
// yields each Exec's error.
func execAll(t *testing.T, p *Pool, bodies ...string) <-chan error {
	t.Helper()
	errs := make(chan error, len(bodies))
	for i, b := range bodies {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := p.Exec(ctx, job(string(rune('a'+i)), b))
			if err == nil && string(out.Body) != fakeworker.AckBody {
				err = context.Canceled // any error: the reply was wrong
			}
			errs <- err
		}()
	}
	return errs
}

func waitAll(t *testing.T, errs <-chan error, n int) {
	t.Helper()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Exec: %v", err)
		}
	}
}

func TestScaleGrowsBySpawnRatePerTickUpToMax(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Supervisor.WatchTick = time.Hour // the test makes the ticks
	rec := &scaleRecorder{}
	cfg.Observer = rec
	cfg.Scale = Scale{Max: 6, SpawnRate: 2, IdleTimeout: time.Hour}
	p := start(t, cfg, nil)

	bodies := make([]string, 10)
	for i := range bodies {
		bodies[i] = "700ms"
	}
	errs := execAll(t, p, bodies...)
	eventually(t, 5*time.Second, "9 Exec calls waiting", func() bool { return p.Size().Waiting == 9 })
	for i, want := range []int{3, 5, 6, 6} {
		p.scale(time.Now())
		if got := p.Size().Target; got != want {
			t.Fatalf("after tick %d: target %d, want %d", i+1, got, want)
		}
	}
	eventually(t, 5*time.Second, "6 workers in service", func() bool { return p.Size().Running == 6 })
	waitAll(t, errs, len(bodies))
	if got := rec.get(); len(got) != 3 || got[0] != 2 || got[1] != 2 || got[2] != 1 {
		t.Errorf("scaling steps %v, want [2 2 1]", got)
	}
	if s := p.Size(); s.Ups != 3 || s.Min != 1 || s.Max != 6 {
		t.Errorf("Size = %+v", s)
	}
}

func TestScaleWaitThresholdHoldsGrowth(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Supervisor.WatchTick = time.Hour
	cfg.Scale = Scale{Max: 3, SpawnRate: 5, IdleTimeout: time.Hour, WaitThreshold: time.Minute}
	p := start(t, cfg, nil)
	errs := execAll(t, p, "300ms", "300ms")
	eventually(t, 5*time.Second, "1 Exec waiting", func() bool { return p.Size().Waiting == 1 })
	p.scale(time.Now())
	if got := p.Size().Target; got != 1 {
		t.Fatalf("grew to %d before the wait threshold", got)
	}
	p.scale(time.Now().Add(2 * time.Minute))
	if got := p.Size().Target; got != 2 {
		t.Fatalf("target %d past the wait threshold, want 2 (one job waits)", got)
	}
	waitAll(t, errs, 2)
}

func TestScaleShrinksToMinAfterIdleTimeout(t *testing.T) {
	cfg := fakeConfig("slow", 2)
	cfg.Supervisor.WatchTick = 20 * time.Millisecond
	rec := &scaleRecorder{}
	cfg.Observer = rec
	cfg.Scale = Scale{Max: 5, SpawnRate: 5, IdleTimeout: 200 * time.Millisecond}
	p := start(t, cfg, nil)
	errs := execAll(t, p, "400ms", "400ms", "400ms", "400ms", "400ms", "400ms", "400ms")
	eventually(t, 5*time.Second, "the pool at max", func() bool { return p.Size().Running == 5 })
	waitAll(t, errs, 7)
	eventually(t, 5*time.Second, "the pool back at min", func() bool {
		s := p.Size()
		return s.Target == 2 && s.Running == 2 && len(pids(p)) == 2
	})
	if s := p.Size(); s.Downs == 0 || s.Ups == 0 {
		t.Errorf("Size = %+v, want ups and downs counted", s)
	}
	// More ticks, long past the idle timeout: never below min.
	p.scale(time.Now().Add(time.Hour))
	if s := p.Size(); s.Target != 2 || s.Running != 2 {
		t.Errorf("below min after more idle ticks: %+v", s)
	}
	// Still serves.
	if out := run(t, p, job("z", "1ms")); string(out.Body) != fakeworker.AckBody {
		t.Errorf("reply %q", out.Body)
	}
}

func TestScaleDownNeverStopsABusyWorker(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Supervisor.WatchTick = time.Hour
	cfg.Scale = Scale{Max: 3, SpawnRate: 3, IdleTimeout: time.Millisecond}
	p := start(t, cfg, nil)
	long := execAll(t, p, "1500ms")
	eventually(t, 5*time.Second, "the long job running", func() bool { return readyCount(p) == 0 })
	short := execAll(t, p, "1ms", "1ms")
	eventually(t, 5*time.Second, "2 Exec calls waiting", func() bool { return p.Size().Waiting == 2 })
	p.scale(time.Now())
	waitAll(t, short, 2)
	eventually(t, 5*time.Second, "3 workers", func() bool { return p.Size().Running == 3 })
	var busy int
	for _, w := range p.Workers() {
		if w.State == "working" {
			busy = w.Pid
		}
	}
	if busy == 0 {
		t.Fatal("the long job is not running")
	}
	// Every worker but the busy one is idle past the timeout; so, by
	// then, may be the busy one's last use: it must stay.
	p.scale(time.Now().Add(time.Hour))
	if s := p.Size(); s.Target != 1 {
		t.Fatalf("target %d, want 1", s.Target)
	}
	if !pids(p)[busy] {
		t.Fatalf("the busy worker %d was stopped", busy)
	}
	waitAll(t, long, 1)
	eventually(t, 5*time.Second, "one worker left", func() bool { return len(pids(p)) == 1 })
	if !pids(p)[busy] {
		t.Errorf("the remaining worker is not the one that ran the job")
	}
}

func TestScaleOffWithoutMax(t *testing.T) {
	cfg := fakeConfig("slow", 2)
	cfg.Scale = Scale{Max: 2, SpawnRate: 5}
	p, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Size(); s.Min != 2 || s.Max != 2 || p.cfg.Scale.SpawnRate != 0 {
		t.Errorf("scaling on with max = num_workers: %+v", s)
	}
}

// A scaling pool hands jobs to the worker idle for the shortest time, so
// under a light load the others stay idle and can be retired.
func TestScaledPoolReusesTheLastIdleWorker(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Supervisor.WatchTick = time.Hour
	cfg.Scale = Scale{Max: 3, SpawnRate: 3, IdleTimeout: time.Hour}
	p := start(t, cfg, nil)
	errs := execAll(t, p, "300ms", "300ms", "300ms")
	eventually(t, 5*time.Second, "2 Exec calls waiting", func() bool { return p.Size().Waiting == 2 })
	p.scale(time.Now())
	waitAll(t, errs, 3)
	eventually(t, 5*time.Second, "3 idle workers", func() bool { return readyCount(p) == 3 })
	before := map[int]uint64{}
	for _, w := range p.Workers() {
		before[w.Pid] = w.Jobs
	}
	for i := range 5 {
		run(t, p, job(fmt.Sprint("seq", i), "1ms"))
	}
	var used []int
	for _, w := range p.Workers() {
		if w.Jobs != before[w.Pid] {
			used = append(used, w.Pid)
		}
	}
	if len(used) != 1 {
		t.Errorf("5 jobs one after another ran on %d workers, want 1", len(used))
	}
}
