// Package pool runs a fixed-size pool of worker processes (PHP, Python,
// anything speaking goridge v3 over stdin/stdout) and executes jobs on
// them: spawn with the pid handshake, one frame out and one reply back per
// job, supervision (max_jobs, ttl, idle_ttl, max_worker_memory, exec_ttl),
// rolling reset and a stop that leaves no process or goroutine behind.
//
// A worker is a process (proc in process.go: spawn, handshake, write,
// read, interrupt, kill, stop, wait) plus its scheduling state (worker.go:
// its states and the one function, move, that changes them). The
// scheduler (take, release, retire, replace, scale, reset) reaches the
// process only through the process interface, so it runs with fakes in
// tests; the job path (run.go) writes and reads the real process's pipes.
//
// Each worker is its own process group (Setpgid), so a terminal's Ctrl-C
// does not reach the workers and SIGKILL reaches a worker's children too.
// Its stdout is the protocol; its stderr is logged line by line with its
// pid, and its last lines are kept for WorkerError.
//
// Exec starts no goroutine and allocates only the reply it returns (plus
// a timer when exec_ttl or a ctx deadline applies, a waiter when no worker
// is free, and one context.AfterFunc per distinct ctx, shared by all jobs
// under it): the job frame is built in a per-worker buffer, the reply is read
// with one blocking read(2) (see stdoutPipe; a running job holds one OS
// thread), and the job id for Workers is decoded only when Workers is
// called. BenchmarkExec measures it.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// WorkerInfo describes one worker for `supervisor workers`.
type WorkerInfo struct {
	Pid int
	// State is "ready", "working", "stopping" or "dead".
	State string
	// Jobs is the number of jobs the worker has run.
	Jobs uint64
	// RSS is the resident memory in bytes of the worker process and every
	// process below it (see workerMemory; 0 if unknown).
	RSS     uint64
	Created time.Time
	// CurrentJob is the "id" of the job running on the worker, if any.
	CurrentJob string
	// CurrentJobSince is when the worker was handed CurrentJob (zero when
	// idle); with pipelining, when the job before it was answered.
	CurrentJobSince time.Time
}

// Pool is a pool of worker processes. Its methods are safe for concurrent
// use.
type Pool struct {
	cfg       Config
	log       *slog.Logger
	env       []string
	cmdline   string
	stopFrame []byte
	// launch starts a worker process (launchProc; a fake in tests).
	launch func() (process, error)

	mu      sync.Mutex
	all     []*worker // every worker with a live process, until reaped
	idle    []*worker // ready workers, oldest first (taken from the front, or the back when scaling)
	waiters []*waiter // Exec calls waiting for a worker, oldest first
	watches map[<-chan struct{}]*watch
	watchWG sync.WaitGroup // one per watch: its callback, or its successful stop
	live    int            // counted workers plus spawns in progress
	target  int            // the size the spawner keeps live at: NumWorkers, or between it and Scale.Max
	// scaleUps and scaleDowns count scaling steps (Size).
	scaleUps, scaleDowns uint64
	failures             int // start failures and crashes since the last good job
	// lastStartErr is why the spawner's last start failed (Degraded).
	lastStartErr error
	started      bool // Start was called
	closed       bool
	stopping     bool
	changed      chan struct{} // closed and replaced whenever a worker joins or leaves

	wake    chan struct{} // cap 1: the spawner has work
	done    chan struct{} // closed by Stop: spawner and supervisor return
	killNow chan struct{} // closed when Stop runs out of time
	life    context.Context
	endLife context.CancelFunc
	resetMu sync.Mutex // one Reset at a time
	stopped chan struct{}
	stopErr error
	wg      sync.WaitGroup // every goroutine the pool starts
}

type waiter struct {
	ch     chan *worker // cap 1; nil value: the pool closed
	jobCtx []byte
	ctx    context.Context
	since  time.Time // when it started waiting (scaling's wait threshold)
}

// take returns a worker in state working, with cur set to jobCtx.
func (p *Pool) take(ctx, send context.Context, jobCtx []byte) (*worker, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	for len(p.idle) > 0 {
		// A scaling pool hands out the worker idle for the shortest
		// time, so that under a light load the extra workers stay idle
		// long enough to be retired.
		w := p.idle[0]
		if p.cfg.Scale.Max > 0 {
			w = p.idle[len(p.idle)-1]
		}
		select {
		case <-w.proc.exited():
			// Died while idle; its reaper has not taken it out yet.
			p.move(w, stateStopping, retirement{})
			p.idleExitLocked(w)
			continue
		default:
		}
		if w.proc.strayOutput(true) {
			p.retireLocked(w, retireStrayOutput)
			continue
		}
		p.assign(w, ctx, jobCtx)
		p.mu.Unlock()
		return w, nil
	}
	wt := &waiter{ch: make(chan *worker, 1), jobCtx: jobCtx, ctx: ctx, since: time.Now()}
	p.waiters = append(p.waiters, wt)
	p.mu.Unlock()

	t := time.NewTimer(p.cfg.AllocateTimeout)
	defer t.Stop()
	var err error
	select {
	case w := <-wt.ch:
		if w == nil {
			return nil, ErrClosed
		}
		return w, nil
	case <-t.C:
		err = fmt.Errorf("%w within allocate_timeout (%s)", ErrNoWorker, p.cfg.AllocateTimeout)
	case <-send.Done():
		err = fmt.Errorf("%w: %w", ErrNoWorker, context.Cause(send))
	case <-ctx.Done():
		err = fmt.Errorf("%w: %w", ErrNoWorker, context.Cause(ctx))
	}
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == wt {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return nil, err
		}
	}
	p.mu.Unlock()
	// A worker was handed over while we gave up: give it back.
	if w := <-wt.ch; w != nil {
		// Through the same checks as after a job: it may have exited, be
		// due to retire, or the pool may have closed meanwhile.
		p.mu.Lock()
		p.putBackLocked(w)
		p.mu.Unlock()
	}
	return nil, err
}

// fail handles a broken exec: the worker is killed and replaced, and the
// error says why. started says the worker started the job it was given
// (it read it or answered it); see failGone.
func (p *Pool) fail(ctx context.Context, w *worker, cause error, started bool) error {
	p.mu.Lock()
	gone := w.goneMidJob
	p.mu.Unlock()
	return p.failGone(ctx, w, cause, gone, started)
}

// failGone is fail for a caller that read w.goneMidJob (the process had
// exited on its own when the exec broke) before it killed w itself.
// Only a worker that never started a job counts toward the respawn
// backoff (it failed to start, as far as the pool can tell): one that a
// job crashed, hung or made write garbage is replaced at once, so a burst
// of such jobs does not empty the pool.
func (p *Pool) failGone(ctx context.Context, w *worker, cause error, gone, started bool) error {
	p.mu.Lock()
	p.discard(w)
	if !started && w.jobs == 0 {
		p.failures++
	}
	p.mu.Unlock()
	w.proc.kill()
	select {
	case <-p.killNow:
		return fmt.Errorf("%w: worker %d killed mid-job because the pool stop timed out: %w", ErrClosed, w.pid, cause)
	default:
	}
	if errors.Is(cause, os.ErrDeadlineExceeded) && !gone {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (pid %d): %w", ErrExecTimeout, w.pid, context.Cause(ctx))
		}
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return fmt.Errorf("%w (pid %d): %w", ErrExecTimeout, w.pid, context.DeadlineExceeded)
		}
		return fmt.Errorf("%w (pid %d): exec_ttl %s exceeded", ErrExecTimeout, w.pid, p.cfg.Supervisor.ExecTTL)
	}
	t := time.NewTimer(time.Second)
	select {
	case <-w.proc.exited():
	case <-t.C:
	}
	t.Stop()
	we := &WorkerError{Pid: w.pid, Stderr: w.proc.stderrTail(), Err: cause}
	select {
	case <-w.proc.exited():
		we.Exit = w.proc.exitInfo().status
	default:
	}
	return we
}

// release returns w after ran jobs reached it (they count toward Jobs
// and max_jobs); ok says the worker answered (which resets the start
// backoff). Called without p.mu.
func (p *Pool) release(w *worker, ran int, ok bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if ran > 0 {
		w.jobs += uint64(ran)
		w.lastUsed = now
	}
	if ok {
		p.failures, p.lastStartErr = 0, nil
	}
	p.putBackLocked(w)
}

// putBackLocked ends w's hand-out: a worker that exited meanwhile is
// given to its reaper, one to retire (or any, once the pool is closed) is
// stopped, any other goes to a waiting Exec or idle. Called with p.mu held.
func (p *Pool) putBackLocked(w *worker) {
	if !w.retire.set() && w.proc.strayOutput(false) {
		// Whatever it wrote would be read as the next job's reply.
		w.markRetire(retireStrayOutput)
	}
	if w.proc.tripped() {
		// Interrupted right after the reply came: replace it.
		w.markRetire(retireInterrupted)
	}
	if w.goneMidJob {
		p.move(w, stateStopping, retirement{})
		return
	}
	if p.cfg.MaxJobs > 0 && w.jobs >= p.cfg.MaxJobs {
		w.markRetire(retireMaxJobs)
	}
	if w.retire.set() || p.closed {
		r := w.retire
		if !r.set() {
			r = retirePoolStopping
		}
		p.retireLocked(w, r)
		return
	}
	p.ready(w)
}

// discard takes a broken worker out of service; the caller kills it.
// Called with p.mu held.
func (p *Pool) discard(w *worker) {
	p.move(w, stateStopping, retirement{})
}

// ready hands w (starting, or working on a job that ended) to the oldest
// waiting Exec, or makes it idle. Called with p.mu held.
func (p *Pool) ready(w *worker) {
	if len(p.waiters) > 0 {
		wt := p.waiters[0]
		p.waiters = p.waiters[:copy(p.waiters, p.waiters[1:])]
		p.assign(w, wt.ctx, wt.jobCtx)
		wt.ch <- w
		return
	}
	p.move(w, stateReady, retirement{})
}

// add puts a freshly started worker into service (its slot in p.live is
// already reserved). Called with p.mu held.
func (p *Pool) add(w *worker) {
	if w.state == stateDead {
		// It exited right after its handshake and was already reaped
		// (forget left its pipes to us).
		w.proc.close()
		p.live--
		p.failures++
		p.kick()
		return
	}
	if p.closed {
		p.live--
		p.move(w, stateStopping, retirement{})
		w.proc.kill() // never ran a job: no need to be gentle
		return
	}
	p.ready(w)
}

// uncount frees w's slot so the spawner starts a replacement. Called
// with p.mu held.
func (p *Pool) uncount(w *worker) {
	if w.counted {
		w.counted = false
		p.live--
		p.kick()
	}
}

// forget removes a reaped worker from the pool and closes its pipes.
// Called with p.mu held.
func (p *Pool) forget(w *worker) {
	from := w.state
	if from == stateReady {
		// It exited on its own while idle.
		p.idleExitLocked(w)
		p.log.Warn("worker exited while idle", "pid", w.pid, "status", w.proc.exitInfo().status)
	}
	p.move(w, stateDead, retirement{})
	if from != stateStarting {
		// A worker still in its handshake: spawn reads its pipes and
		// closes them when the handshake fails.
		w.proc.close()
	}
}

// broadcast wakes everything waiting in waitFor. Called with p.mu held.
func (p *Pool) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// kick wakes the spawner without blocking.
func (p *Pool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// waitFor waits until cond (evaluated with p.mu held) is true or ctx ends.
func (p *Pool) waitFor(ctx context.Context, cond func() bool) error {
	for {
		p.mu.Lock()
		if cond() {
			p.mu.Unlock()
			return nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
