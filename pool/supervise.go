package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	mib        = 1 << 20
)

// defaultSteadyUptime: a worker that exits on its own while idle after
// living this long does not count as a failure for the respawn backoff.
const defaultSteadyUptime = 10 * time.Second

// idleExitLocked counts w, which exited on its own while idle, as a
// failure for the respawn backoff if it died young without having done
// its work: a worker that served a while and then ended (a dropped DB
// connection), or that ran jobs and exited with status 0 (its own
// max-jobs or memory guard), is replaced without backoff. Called with
// p.mu held.
func (p *Pool) idleExitLocked(w *worker) {
	steady := cmp.Or(p.cfg.steadyAfter, defaultSteadyUptime)
	if time.Since(w.created) < steady && (w.jobs == 0 || !w.proc.exitInfo().ok) {
		p.failures++
	}
}

// backoff is the wait before the next start after n failures in a row.
func backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// spawner keeps p.live at p.target (NumWorkers unless scaled): it starts a worker whenever one
// leaves, waiting backoff(failures) first when starts or workers have
// been failing, so a broken command never spins.
func (p *Pool) spawner() {
	for {
		select {
		case <-p.done:
			return
		case <-p.wake:
		}
		for {
			p.mu.Lock()
			if p.closed || p.live >= p.target {
				p.mu.Unlock()
				break
			}
			p.live++
			fails := p.failures
			p.mu.Unlock()
			if fails > 0 && !p.sleep(backoff(fails)) {
				p.mu.Lock()
				p.live--
				p.mu.Unlock()
				return
			}
			w, err := p.spawn(p.life)
			p.mu.Lock()
			if err != nil {
				p.live--
				p.failures++
				p.lastStartErr = err
				p.mu.Unlock()
				if p.life.Err() == nil {
					p.log.Error("starting a worker failed; retrying with backoff", "err", err)
				}
				continue
			}
			p.add(w)
			p.mu.Unlock()
		}
	}
}

// sleep waits d; false if the pool is stopping.
func (p *Pool) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}

// supervise checks the worker limits every WatchTick.
func (p *Pool) supervise() {
	s := p.cfg.Supervisor
	if s.TTL <= 0 && s.IdleTTL <= 0 && s.MaxWorkerMemory == 0 {
		<-p.done
		return
	}
	t := time.NewTicker(s.WatchTick)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.check(time.Now())
		}
	}
}

// check applies ttl, idle_ttl and max_worker_memory. An idle worker past a
// limit is stopped now; a busy one is marked and replaced after its job.
func (p *Pool) check(now time.Time) {
	s := p.cfg.Supervisor
	var rss map[int]uint64
	if s.MaxWorkerMemory > 0 {
		p.mu.Lock()
		pids := make([]int, 0, len(p.all))
		for _, w := range p.all {
			pids = append(pids, w.pid)
		}
		p.mu.Unlock()
		rss = make(map[int]uint64, len(pids))
		for _, pid := range pids {
			rss[pid] = workerMemory(pid)
		}
	}
	var stop []*worker
	p.mu.Lock()
	for _, w := range p.all {
		if !w.counted || (w.state != stateReady && w.state != stateWorking) {
			continue
		}
		var why retirement
		switch {
		case s.TTL > 0 && now.Sub(w.created) >= s.TTL:
			why = retirement{ExitTTL, fmt.Sprintf("ttl %s reached", s.TTL)}
		case s.MaxWorkerMemory > 0 && rss[w.pid] > s.MaxWorkerMemory*mib:
			why = retirement{ExitMemory, fmt.Sprintf("rss %d MB over max_worker_memory %d MB", rss[w.pid]/mib, s.MaxWorkerMemory)}
		case s.IdleTTL > 0 && w.state == stateReady && now.Sub(w.lastUsed) >= s.IdleTTL:
			why = retirement{ExitIdleTTL, fmt.Sprintf("idle for %s (idle_ttl)", s.IdleTTL)}
		default:
			continue
		}
		if w.state == stateWorking {
			w.markRetire(why)
			continue
		}
		p.move(w, stateStopping, why)
		stop = append(stop, w)
	}
	p.mu.Unlock()
	for _, w := range stop {
		p.log.Info("replacing worker", "pid", w.pid, "reason", w.retirement().detail)
		p.wg.Go(func() { p.stopWorker(w, "supervisor") })
	}
}

// retirement reads retire after the worker left service (nothing writes
// it any more by then).
func (w *worker) retirement() retirement { return w.retire }

// Reset replaces every worker, one at a time, while jobs keep running:
// each replacement is started and has answered its handshake before the
// worker it replaces is retired (an idle one stops now, a busy one after
// its job), and the next replacement starts once that worker is gone. No
// job is lost and every pid changes. The first replacement that fails to
// start ends the reset with its error (quoting what the new worker
// printed); the workers not yet replaced keep serving, so the pool keeps
// its size. Bounded by ResetTimeout and ctx.
func (p *Pool) Reset(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ResetTimeout)
	defer cancel()
	p.resetMu.Lock()
	defer p.resetMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	var olds []*worker
	for _, w := range p.all {
		if w.counted {
			olds = append(olds, w)
		}
	}
	p.mu.Unlock()
	for i, old := range olds {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return ErrClosed
		}
		if !old.counted {
			// It left on its own; the spawner replaced it with the
			// new code already.
			p.mu.Unlock()
			continue
		}
		p.live++ // the replacement's slot, until old leaves
		p.mu.Unlock()
		w, err := p.spawn(ctx)
		p.mu.Lock()
		if err != nil {
			p.live--
			p.mu.Unlock()
			return fmt.Errorf("pool: reset: replacement %d of %d did not start, the other workers keep running: %w", i+1, len(olds), err)
		}
		p.add(w)
		switch {
		case p.closed:
			p.mu.Unlock()
			return ErrClosed
		case !w.counted:
			p.mu.Unlock()
			return fmt.Errorf("pool: reset: replacement %d of %d (pid %d) exited right after its handshake, the other workers keep running%s",
				i+1, len(olds), w.pid, describeExit(w.proc.exitInfo().status, w.proc.stderrTail()))
		}
		p.retireForReset(old)
		p.mu.Unlock()
		err = p.waitFor(ctx, func() bool { return p.closed || !slices.Contains(p.all, old) })
		if err != nil {
			return fmt.Errorf("pool: reset: waiting for worker %d to finish its job: %w", old.pid, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return nil
}

// retireLocked stops w, idle or back from its job (holding none), for r;
// the spawner replaces it. Called with p.mu held.
func (p *Pool) retireLocked(w *worker, r retirement) {
	p.move(w, stateStopping, r)
	p.wg.Go(func() { p.stopWorker(w, r.detail) })
}

// retireForReset takes old out of service now if it is idle, or after
// its job if it is busy; its replacement is in service already. Called
// with p.mu held.
func (p *Pool) retireForReset(old *worker) {
	switch old.state {
	case stateReady:
		p.retireLocked(old, retireReset)
	case stateWorking:
		old.markRetire(retireReset)
	}
}

// ErrDegraded is wrapped by Degraded's error.
var ErrDegraded = errors.New("pool below its size")

// Degraded returns an error wrapping ErrDegraded while the pool has fewer
// workers in service than its size (NumWorkers, or the scaled size) because starting workers keeps
// failing (the spawner is backing off), saying how many run and why the
// last start failed; nil otherwise, also while a worker that left is
// being replaced normally.
func (p *Pool) Degraded() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.failures == 0 || p.lastStartErr == nil {
		return nil
	}
	if n := p.running(); n < p.target {
		return fmt.Errorf("%w: %d of %d workers; starting a worker failed %d times in a row, last: %w",
			ErrDegraded, n, p.target, p.failures, p.lastStartErr)
	}
	return nil
}

// running counts workers in service. Called with p.mu held.
func (p *Pool) running() int {
	n := 0
	for _, w := range p.all {
		if w.counted {
			n++
		}
	}
	return n
}

// Stop stops the pool: no new jobs (Exec returns ErrClosed), a stop frame
// to every idle worker and to each busy one when its job ends, up to
// DestroyTimeout (or ctx) for all of them to exit, then SIGKILL to the
// process groups that are left. It returns once every process is reaped
// and every pool goroutine has returned. A job still running when the
// time is up fails with ErrClosed. Later calls wait for the first one.
func (p *Pool) Stop(ctx context.Context) error {
	p.mu.Lock()
	first := !p.stopping
	p.stopping = true
	p.mu.Unlock()
	if !first {
		select {
		case <-p.stopped:
			return p.stopErr
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	p.stopErr = p.shutdown(ctx)
	close(p.stopped)
	return p.stopErr
}

func (p *Pool) shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	close(p.done)
	p.endLife()
	for _, wt := range p.waiters {
		wt.ch <- nil
	}
	p.waiters = nil
	idle := slices.Clone(p.idle)
	for _, w := range idle {
		p.move(w, stateStopping, retirement{})
	}
	p.mu.Unlock()
	for _, w := range idle {
		p.wg.Go(func() { p.stopWorker(w, "pool stopping") })
	}

	dctx, cancel := context.WithTimeout(ctx, p.cfg.DestroyTimeout)
	defer cancel()
	err := p.waitFor(dctx, func() bool { return len(p.all) == 0 })
	if err != nil {
		close(p.killNow)
		p.mu.Lock()
		left := slices.Clone(p.all)
		p.mu.Unlock()
		p.log.Warn("workers still running after destroy_timeout; killing them", "count", len(left))
		for _, w := range left {
			w.proc.kill()
		}
	}
	p.wg.Wait()
	p.dropWatches()
	if ctx.Err() != nil {
		return fmt.Errorf("pool: stop: workers had to be killed: %w", context.Cause(ctx))
	}
	return nil
}
