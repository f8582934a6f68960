package pool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The scheduler (take, release, retire, replace, scale, reset) driven
// with fake processes: no process is started.

// checkBooks fails the test if the pool's bookkeeping disagrees with its
// workers' states: p.idle holds exactly the ready workers, only ready and
// working workers count toward p.live, and p.live covers them.
func checkBooks(t *testing.T, p *Pool) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	counted := 0
	for _, w := range p.idle {
		if w.state != stateReady || !slices.Contains(p.all, w) {
			t.Errorf("worker %d in the idle list is %s (in the pool: %v)", w.pid, w.state, slices.Contains(p.all, w))
		}
	}
	for _, w := range p.all {
		if (w.state == stateReady) != slices.Contains(p.idle, w) {
			t.Errorf("worker %d is %s, in the idle list: %v", w.pid, w.state, slices.Contains(p.idle, w))
		}
		if w.counted {
			counted++
			if w.state != stateReady && w.state != stateWorking {
				t.Errorf("worker %d is %s and still counted", w.pid, w.state)
			}
		}
	}
	if p.live < counted {
		t.Errorf("live = %d, fewer than the %d counted workers", p.live, counted)
	}
}

// curJob returns the CurrentJob Workers shows for pid.
func curJob(p *Pool, pid int) string {
	for _, w := range p.Workers() {
		if w.Pid == pid {
			return w.CurrentJob
		}
	}
	return ""
}

func TestSchedulerTakeAndRelease(t *testing.T) {
	p, _ := startFake(t, fakeCfg(2))
	checkBooks(t, p)
	if got := states(p); len(got) != 2 || readyCount(p) != 2 {
		t.Fatalf("workers %v, want 2 ready", got)
	}
	w := takeNow(t, p, "a")
	if s := states(p)[w.pid]; s != "working" || curJob(p, w.pid) != "a" {
		t.Fatalf("taken worker is %s running %q, want working on a", s, curJob(p, w.pid))
	}
	checkBooks(t, p)
	p.release(w, 1, true)
	if s := states(p)[w.pid]; s != "ready" || curJob(p, w.pid) != "" {
		t.Fatalf("released worker is %s running %q, want ready and idle", s, curJob(p, w.pid))
	}
	for _, x := range p.Workers() {
		if x.Pid == w.pid && x.Jobs != 1 {
			t.Fatalf("Jobs = %d, want 1", x.Jobs)
		}
	}
	checkBooks(t, p)
}

func TestSchedulerWaiterGetsTheReleasedWorker(t *testing.T) {
	p, _ := startFake(t, fakeCfg(1))
	w := takeNow(t, p, "a")
	got := make(chan *worker, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		x, err := p.take(ctx, ctx, []byte(`{"id":"b"}`))
		if err != nil {
			t.Errorf("waiting take: %v", err)
		}
		got <- x
	}()
	eventually(t, 5*time.Second, "a job waiting", func() bool { return p.Size().Waiting == 1 })
	p.release(w, 1, true)
	x := <-got
	if x != w {
		t.Fatalf("the waiting job got worker %v, want the released %d", x, w.pid)
	}
	if s := stateOf(p, w); s != stateWorking || curJob(p, w.pid) != "b" {
		t.Fatalf("worker is %s running %q, want working on b", s, curJob(p, w.pid))
	}
	checkBooks(t, p)
	p.release(x, 1, true)
	checkBooks(t, p)
}

func TestSchedulerBusyWorkerRetiresAfterItsJob(t *testing.T) {
	cfg := fakeCfg(2)
	cfg.Supervisor.TTL = time.Minute
	obs := &exits{}
	cfg.Observer = obs
	p, l := startFake(t, cfg)
	busy := takeNow(t, p, "a")
	var idle *worker
	p.mu.Lock()
	for _, w := range p.all {
		if w != busy {
			idle = w
		}
	}
	p.mu.Unlock()

	p.check(time.Now().Add(time.Hour)) // both past their ttl
	waitState(t, p, idle, stateDead)
	if n := l.proc(idle.pid).stops.Load(); n != 1 {
		t.Fatalf("the idle worker got %d stop frames, want 1", n)
	}
	if s := stateOf(p, busy); s != stateWorking || l.proc(busy.pid).stops.Load() != 0 {
		t.Fatalf("the busy worker is %s with %d stop frames, want working and none", s, l.proc(busy.pid).stops.Load())
	}
	p.mu.Lock()
	why := busy.retire.reason
	p.mu.Unlock()
	if why != ExitTTL {
		t.Fatalf("busy worker marked %q, want %q", why, ExitTTL)
	}
	checkBooks(t, p)

	p.release(busy, 1, true)
	waitState(t, p, busy, stateDead)
	if n := l.proc(busy.pid).stops.Load(); n != 1 {
		t.Fatalf("the busy worker got %d stop frames after its job, want 1", n)
	}
	eventually(t, 5*time.Second, "two replacements", func() bool { return readyCount(p) == 2 })
	for pid := range states(p) {
		if pid == busy.pid || pid == idle.pid {
			t.Fatalf("worker %d still in the pool", pid)
		}
	}
	if n := obs.count(ExitTTL); n != 2 {
		t.Fatalf("observer told of %d ttl exits, want 2", n)
	}
	checkBooks(t, p)
}

func TestSchedulerReplacesAWorkerThatExits(t *testing.T) {
	cfg := fakeCfg(1)
	obs := &exits{}
	cfg.Observer = obs
	p, l := startFake(t, cfg)

	// Idle.
	w := takeNow(t, p, "a")
	p.release(w, 1, true)
	l.proc(w.pid).exit(exitInfo{status: "exit status 255"})
	waitState(t, p, w, stateDead)
	eventually(t, 5*time.Second, "a replacement", func() bool { return readyCount(p) == 1 })

	// Mid-job: it stays the job's until the job lets go of it.
	w = takeNow(t, p, "b")
	l.proc(w.pid).exit(exitInfo{status: "exit status 255"})
	eventually(t, 5*time.Second, "the reaper to see the exit", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return w.goneMidJob
	})
	if s := stateOf(p, w); s != stateWorking {
		t.Fatalf("worker is %s while its job holds it, want working", s)
	}
	p.release(w, 0, false)
	waitState(t, p, w, stateDead)
	eventually(t, 5*time.Second, "a replacement", func() bool { return readyCount(p) == 1 })
	if n := obs.count(ExitCrashed); n != 2 {
		t.Fatalf("observer told of %d crashes, want 2", n)
	}
	checkBooks(t, p)
}

func TestSchedulerStrayOutputRetiresTheWorker(t *testing.T) {
	cfg := fakeCfg(1)
	obs := &exits{}
	cfg.Observer = obs
	p, l := startFake(t, cfg)
	w := takeNow(t, p, "a")
	l.proc(w.pid).stray.Store(true)
	p.release(w, 1, true)
	waitState(t, p, w, stateDead)
	x := takeNow(t, p, "b")
	if x == w {
		t.Fatal("the worker that wrote after its reply got another job")
	}
	p.release(x, 1, true)
	if n := obs.count(ExitStrayOutput); n != 1 {
		t.Fatalf("observer told of %d stray-output exits, want 1", n)
	}
}

func TestSchedulerScalingNeverRetiresABusyWorker(t *testing.T) {
	cfg := fakeCfg(1)
	cfg.Scale = Scale{Max: 3, SpawnRate: 5, IdleTimeout: time.Minute}
	p, _ := startFake(t, cfg)
	busy := []*worker{takeNow(t, p, "a")}
	got := make(chan *worker, 2)
	for i := range 2 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			w, err := p.take(ctx, ctx, []byte(fmt.Sprintf(`{"id":"w%d"}`, i)))
			if err != nil {
				t.Errorf("waiting take: %v", err)
			}
			got <- w
		}()
	}
	eventually(t, 5*time.Second, "two jobs waiting", func() bool { return p.Size().Waiting == 2 })
	p.scale(time.Now())
	busy = append(busy, <-got, <-got)
	if s := p.Size(); s.Target != 3 || s.Running != 3 {
		t.Fatalf("size %+v, want 3 running", s)
	}

	// Every worker is busy: however long past idle_timeout, none goes.
	p.scale(time.Now().Add(time.Hour))
	for _, w := range busy {
		if s := stateOf(p, w); s != stateWorking {
			t.Fatalf("busy worker %d is %s after a scale-down tick", w.pid, s)
		}
	}
	if s := p.Size(); s.Target != 3 || s.Downs != 0 {
		t.Fatalf("size %+v, want target 3 and no step down", s)
	}

	// One job ends: only that worker is retired.
	p.release(busy[1], 1, true)
	p.scale(time.Now().Add(time.Hour))
	waitState(t, p, busy[1], stateDead)
	for _, w := range []*worker{busy[0], busy[2]} {
		if s := stateOf(p, w); s != stateWorking {
			t.Fatalf("busy worker %d is %s after a scale-down tick", w.pid, s)
		}
	}
	if s := p.Size(); s.Target != 2 || s.Downs != 1 {
		t.Fatalf("size %+v, want target 2 after one step down", s)
	}

	// All idle: down to the minimum, never below.
	p.release(busy[0], 1, true)
	p.release(busy[2], 1, true)
	p.scale(time.Now().Add(2 * time.Hour))
	if s := p.Size(); s.Target != 1 {
		t.Fatalf("size %+v, want target 1", s)
	}
	eventually(t, 5*time.Second, "one worker left", func() bool { return len(states(p)) == 1 })
	checkBooks(t, p)
}

func TestSchedulerResetReplacesEveryWorker(t *testing.T) {
	p, l := startFake(t, fakeCfg(2))
	old := states(p)
	busy := takeNow(t, p, "a")
	done := make(chan error, 1)
	go func() { done <- p.Reset(context.Background()) }()
	eventually(t, 5*time.Second, "the busy worker marked for reset", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return busy.retire == retireReset
	})
	if l.proc(busy.pid).stops.Load() != 0 {
		t.Fatal("the busy worker was stopped mid-job")
	}
	p.release(busy, 1, true)
	if err := <-done; err != nil {
		t.Fatalf("Reset: %v", err)
	}
	eventually(t, 5*time.Second, "two new workers", func() bool { return readyCount(p) == 2 })
	for pid := range states(p) {
		if _, ok := old[pid]; ok {
			t.Fatalf("worker %d survived the reset", pid)
		}
	}
	checkBooks(t, p)
}

func TestMoveAllowsOnlyTheTransitionTable(t *testing.T) {
	legal := map[state][]state{
		stateStarting: {stateReady, stateWorking, stateStopping, stateDead},
		stateReady:    {stateWorking, stateStopping, stateDead},
		stateWorking:  {stateReady, stateWorking, stateStopping, stateDead},
		stateStopping: {stateDead},
	}
	all := []state{stateStarting, stateReady, stateWorking, stateStopping, stateDead}
	for _, from := range all {
		for _, to := range all {
			if want := slices.Contains(legal[from], to); canMove(from, to) != want {
				t.Errorf("canMove(%s, %s) = %v, want %v", from, to, !want, want)
			}
		}
	}

	p, err := Open(fakeCfg(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Stop(context.Background()) }()
	for _, c := range []struct{ from, to state }{
		{stateStopping, stateReady},
		{stateDead, stateWorking},
		{stateReady, stateReady},
		{stateReady, stateStarting},
	} {
		w := &worker{pid: 7, state: c.from, released: make(chan struct{}, 1)}
		msg := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			p.mu.Lock()
			defer p.mu.Unlock()
			p.move(w, c.to, retirement{})
			return ""
		}()
		if want := fmt.Sprintf("illegal transition %s -> %s", c.from, c.to); !strings.Contains(msg, want) {
			t.Errorf("move %s -> %s: panic %q, want one saying %q", c.from, c.to, msg, want)
		}
		if w.state != c.from {
			t.Errorf("move %s -> %s left the worker %s", c.from, c.to, w.state)
		}
	}
}
