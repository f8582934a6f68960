package pool

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakePidBase is above any pid Linux hands out (PID_MAX_LIMIT is 2^22),
// so a fake's pid names no real process.
const fakePidBase = 5_000_000

// fakeProc is a worker process that starts nothing: the scheduler tests
// drive it. It "exits" when killed, when stopped (unless it ignores the
// stop frame) or when the test says so.
type fakeProc struct {
	pid        int
	ignoreStop bool

	exitOnce sync.Once
	exitReq  chan struct{} // closed when the process is to end
	info     exitInfo      // written before exitReq is closed
	done     chan struct{} // closed by wait
	stops    atomic.Int32
	kills    atomic.Int32
	stray    atomic.Bool
}

func newFakeProc(pid int) *fakeProc {
	return &fakeProc{pid: pid, exitReq: make(chan struct{}), done: make(chan struct{})}
}

// exit makes the process end with info (the first call wins).
func (f *fakeProc) exit(info exitInfo) {
	f.exitOnce.Do(func() {
		f.info = info
		close(f.exitReq)
	})
}

func (f *fakeProc) id() int { return f.pid }
func (f *fakeProc) handshake(context.Context, time.Duration, time.Duration, *slog.Logger) error {
	return nil
}
func (f *fakeProc) wait()                   { <-f.exitReq; close(f.done) }
func (f *fakeProc) exited() <-chan struct{} { return f.done }
func (f *fakeProc) exitInfo() exitInfo      { return f.info }
func (f *fakeProc) strayOutput(bool) bool   { return f.stray.Load() }
func (f *fakeProc) tripped() bool           { return false }
func (f *fakeProc) readingReply() bool      { return false }
func (f *fakeProc) interrupt()              {}
func (f *fakeProc) close()                  {}
func (f *fakeProc) stderrTail() []string    { return nil }
func (f *fakeProc) kill() {
	f.kills.Add(1)
	f.exit(exitInfo{status: "signal: killed", killed: true})
}
func (f *fakeProc) stop(_ []byte, grace time.Duration, now <-chan struct{}) bool {
	f.stops.Add(1)
	if !f.ignoreStop {
		f.exit(exitInfo{status: "exit status 0", ok: true})
		<-f.done
		return false
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-now:
	}
	f.kill()
	<-f.done
	return true
}

// fakeLauncher starts fake processes and keeps them by pid.
type fakeLauncher struct {
	mu    sync.Mutex
	next  int
	procs map[int]*fakeProc
}

func (l *fakeLauncher) launch() (process, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	f := newFakeProc(fakePidBase + l.next)
	if l.procs == nil {
		l.procs = map[int]*fakeProc{}
	}
	l.procs[f.pid] = f
	return f, nil
}

func (l *fakeLauncher) proc(pid int) *fakeProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[pid]
}

// fakeCfg is a pool of n fake workers whose background loops (supervise,
// scale) never tick on their own: tests call check and scale.
func fakeCfg(n int) Config {
	return Config{
		Command:         []string{"fake-worker"},
		NumWorkers:      n,
		AllocateTimeout: 5 * time.Second,
		DestroyTimeout:  5 * time.Second,
		ResetTimeout:    5 * time.Second,
		Supervisor:      Supervisor{WatchTick: time.Hour},
	}
}

// startFake starts a pool of fake workers, stopped at cleanup (no
// goroutine may outlive it).
func startFake(t *testing.T, cfg Config) (*Pool, *fakeLauncher) {
	t.Helper()
	checkLeaks(t)
	p, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeLauncher{}
	p.launch = l.launch
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return p, l
}

// takeNow takes a worker, failing the test if none is free within 5s.
func takeNow(t *testing.T, p *Pool, id string) *worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := p.take(ctx, ctx, []byte(`{"id":"`+id+`"}`))
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	return w
}

// states returns each worker's state by pid, as Workers reports it.
func states(p *Pool) map[int]string {
	m := map[int]string{}
	for _, w := range p.Workers() {
		m[w.Pid] = w.State
	}
	return m
}

// stateOf reads w's state under the pool's lock.
func stateOf(p *Pool, w *worker) state {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.state
}

// waitState waits until w is in state s.
func waitState(t *testing.T, p *Pool, w *worker, s state) {
	t.Helper()
	eventually(t, 5*time.Second, "worker "+s.String(), func() bool { return stateOf(p, w) == s })
}
