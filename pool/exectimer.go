package pool

import (
	"sync"
	"time"
)

// execTimer enforces the deadline of a worker's running job (exec_ttl,
// or the job ctx's deadline) when its stdout is read in blocking mode.
//
// Arming a timer for every job and stopping it after the reply (and moving
// the stdin write deadline along, which re-arms a runtime timer too) cost
// three allocations and as many timer operations per job. So one timer per
// worker is
// re-armed lazily: set only records the job's deadline, and moves the timer
// only when that deadline is earlier than the time the timer fires. When
// it fires, the timer looks at the deadline of the job running then: none
// (between jobs) leaves it unarmed, a later one re-arms it, a passed one
// calls expire. With exec_ttl of a minute and jobs of milliseconds, the
// timer fires about once a minute per worker instead of being armed and
// stopped per job.
//
// expire runs with mu held, so once set(time.Time{}) has returned no
// expiry of the job that ended can land any more: an expiry that raced
// with the reply has tripped the pipes before, which release sees (the
// worker is retired, the next job never runs on it).
type execTimer struct {
	expire func() // interrupts the worker's pipes; called with mu held

	mu       sync.Mutex
	deadline time.Time // the running job's deadline; zero between jobs
	firesAt  time.Time // when t fires; zero while not armed
	t        *time.Timer
	stopped  bool
}

// set records dl as the running job's deadline; the zero time clears it
// (the job is over). A deadline already passed expires at once.
func (e *execTimer) set(dl time.Time) {
	e.mu.Lock()
	e.deadline = dl
	if dl.IsZero() || e.stopped || (!e.firesAt.IsZero() && !dl.Before(e.firesAt)) {
		// Nothing to run, or the timer fires in time and re-arms then.
		e.mu.Unlock()
		return
	}
	d := time.Until(dl)
	if d <= 0 {
		e.expire()
		e.mu.Unlock()
		return
	}
	if e.t == nil {
		e.t = time.AfterFunc(d, e.fire)
	} else {
		e.t.Reset(d)
	}
	e.firesAt = dl
	e.mu.Unlock()
}

// fire runs when the timer goes off.
func (e *execTimer) fire() {
	e.mu.Lock()
	e.firesAt = time.Time{}
	dl := e.deadline
	if dl.IsZero() || e.stopped {
		e.mu.Unlock()
		return
	}
	if d := time.Until(dl); d > 0 {
		e.t.Reset(d)
		e.firesAt = dl
		e.mu.Unlock()
		return
	}
	e.expire()
	e.mu.Unlock()
}

// stop disarms the timer for good; set and fire do nothing afterwards,
// and an expiry under way has finished when stop returns.
func (e *execTimer) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	if e.t != nil {
		e.t.Stop()
	}
}
