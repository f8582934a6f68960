// Package localq is the hand-out core shared by the drivers that keep
// their queue in the supervisor's own process (memjobs, boltjobs): the
// open/closing/closed life cycle, pause and resume, the prefetch cap on
// unsettled deliveries, the blocking Receive and the non-blocking
// ReceiveReady over a driver's ready jobs, and the lanes that hand out the
// jobs of one ordering key one at a time.
//
// What differs stays in the driver: how jobs are stored and ordered (a
// Source), what a publish and a settlement write, and what Close leaves
// behind. The Core works under the driver's own mutex, so that the
// driver's job sets and the Core's counters change together.
package localq

import (
	"context"
	"fmt"
	"sync"

	"github.com/pipevisor/pipevisor/consumer"
)

// State is where a job of a local queue is.
type State uint8

// The states of a job.
const (
	Ready   State = iota + 1 // in the ready order
	Delayed                  // waiting for its due time
	Pending                  // behind the head of its key's lane
	Active                   // handed out, not settled
	Done                     // acked, dead or auto-acked
)

type lifecycle uint8

const (
	open    lifecycle = iota
	closing           // Close is waiting for handed-out deliveries
	closed
)

// Config names a queue for the Core.
type Config struct {
	Prefix   string // error prefix: the driver package, "memjobs"
	Driver   string // driver name in stats: "memory"
	Name     string // pipeline name
	Priority int64  // pipeline priority, reported by Stat
	Prefetch int    // cap on deliveries handed out and unsettled; > 0
}

// Core is the hand-out state of one local queue. Its zero value is not
// usable: call Init. Methods whose names end in Locked, and those that
// say so, need the driver's mutex (the one given to Init) held; the
// others take it themselves.
type Core struct {
	cfg Config
	mu  *sync.Mutex

	sig  chan struct{} // capacity 1: wakes one blocked Receive
	done chan struct{} // closed when Close starts

	st      lifecycle
	paused  bool
	active  int           // handed out and not settled (auto-acked jobs excluded)
	waiters int           // Receive calls blocked
	idle    chan struct{} // closed when active drops to 0 while closing
}

// Init makes c an open, unpaused queue with nothing handed out, guarded
// by mu.
func (c *Core) Init(mu *sync.Mutex, cfg Config) {
	*c = Core{
		cfg:  cfg,
		mu:   mu,
		sig:  make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// Name returns the pipeline name.
func (c *Core) Name() string { return c.cfg.Name }

// Prefetch returns the cap on unsettled deliveries.
func (c *Core) Prefetch() int { return c.cfg.Prefetch }

// IsOpen reports whether Close has not started. Caller holds the mutex.
func (c *Core) IsOpen() bool { return c.st == open }

// IsClosed reports whether Close has finished, after which nothing may be
// settled. Caller holds the mutex.
func (c *Core) IsClosed() bool { return c.st == closed }

// PausedLocked reports whether the queue is paused (Pause without a
// Resume since).
func (c *Core) PausedLocked() bool { return c.paused }

// Active returns the number of deliveries handed out and not settled.
// Caller holds the mutex.
func (c *Core) Active() int { return c.active }

// CanTakeLocked reports whether a job may be handed out now: not paused
// and fewer than prefetch deliveries unsettled.
func (c *Core) CanTakeLocked() bool { return !c.paused && c.active < c.cfg.Prefetch }

// HandOutLocked counts a delivery handed out, until SettledLocked.
func (c *Core) HandOutLocked() { c.active++ }

// SettledLocked ends the count of one delivery handed out: it lets a
// waiting Close finish once none is left, and wakes a blocked Receive,
// which may now be under the prefetch cap or find the job put back.
func (c *Core) SettledLocked() {
	c.active--
	if c.st == closing && c.active == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.KickLocked()
}

// KickLocked wakes one blocked Receive, if any: to be called whenever a
// job may have become ready.
func (c *Core) KickLocked() {
	if c.waiters > 0 {
		select {
		case c.sig <- struct{}{}:
		default:
		}
	}
}

// ErrClosed returns consumer.ErrClosed wrapped as the failed op (such as
// "publish to") on this queue.
func (c *Core) ErrClosed(op string) error {
	if op == "" {
		return fmt.Errorf("%s: %q: %w", c.cfg.Prefix, c.cfg.Name, consumer.ErrClosed)
	}
	return fmt.Errorf("%s: %s %q: %w", c.cfg.Prefix, op, c.cfg.Name, consumer.ErrClosed)
}

// StatLocked returns the queue's numbers with the given queue name and
// job counts: Active counts the deliveries not settled, and Consuming is
// false while paused or closed.
func (c *Core) StatLocked(queue string, ready, delayed int) consumer.Stat {
	return consumer.Stat{
		Pipeline:  c.cfg.Name,
		Driver:    c.cfg.Driver,
		Queue:     queue,
		Priority:  c.cfg.Priority,
		Ready:     int64(ready),
		Delayed:   int64(delayed),
		Active:    int64(c.active),
		Consuming: c.st == open && !c.paused,
	}
}

// Pause stops Receive and ReceiveReady from handing out jobs until
// Resume; blocked Receive calls keep waiting. It is idempotent and returns
// consumer.ErrClosed once Close has started.
func (c *Core) Pause(_ context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != open {
		return c.ErrClosed("pause")
	}
	c.paused = true
	return nil
}

// Resume undoes Pause. It is idempotent and returns consumer.ErrClosed
// once Close has started.
func (c *Core) Resume(_ context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != open {
		return c.ErrClosed("resume")
	}
	c.paused = false
	c.KickLocked()
	return nil
}

// Check returns nil while the queue is open and consumer.ErrClosed once
// Close has started.
func (c *Core) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != open {
		return c.ErrClosed("")
	}
	return nil
}

// Close stops handing out: from its start Receive returns
// consumer.ErrClosed, blocked calls included, and IsOpen is false. The
// first Close then runs stopping (when not nil) without the mutex. Every
// Close waits until the deliveries handed out are settled or ctx is done,
// and the first to get there marks the queue closed (IsClosed) and
// returns last true: it is the one to release what the driver holds. A
// Close that finds the queue closed returns last false and nil. err wraps
// ctx.Err() when deliveries were still unsettled.
func (c *Core) Close(ctx context.Context, stopping func()) (last bool, err error) {
	c.mu.Lock()
	switch c.st {
	case closed:
		c.mu.Unlock()
		return false, nil
	case open:
		c.st = closing
		close(c.done)
		if stopping != nil {
			c.mu.Unlock()
			stopping()
			c.mu.Lock()
		}
	}
	if c.active > 0 {
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle := c.idle
		c.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	if c.st == closed { // a concurrent Close finished first
		return false, nil
	}
	c.st = closed
	if n := c.active; n > 0 {
		return true, fmt.Errorf("%s: close %q with %d deliveries unsettled: %w", c.cfg.Prefix, c.cfg.Name, n, ctx.Err())
	}
	return true, nil
}
