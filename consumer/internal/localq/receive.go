package localq

import (
	"context"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Source is a driver's queued jobs as Receive and ReceiveReady see them.
// T is what a take hands from TakeReady to Deliver (the job, and whatever
// the driver reads of it under the mutex). Every method but Deliver is
// called with the Core's mutex held.
type Source[T any] interface {
	// PromoteDue moves the delayed jobs whose time has come to the ready
	// order, behind the jobs already ready.
	PromoteDue()
	// TakeReady removes the most urgent ready job and returns it, false
	// when none is ready. It calls HandOutLocked for a job that will be
	// settled, and settles an auto-ack job on the spot.
	TakeReady() (T, bool)
	// ReadyLen is the number of jobs TakeReady can return now.
	ReadyLen() int
	// NextDue is how long until the earliest delayed job is due, false
	// when none is delayed.
	NextDue() (time.Duration, bool)
	// Deliver wraps a job TakeReady returned; it is called with or without
	// the mutex (the job belongs to its hand-out until settled).
	Deliver(T) *consumer.Delivery
}

// Receive hands out the most urgent ready job of src. It blocks, without
// polling, until a job is ready and fewer than prefetch deliveries are
// unsettled (a timer wakes it when the earliest delayed job is due), or
// until ctx is done (it then returns ctx.Err()), or Close starts
// (consumer.ErrClosed). A Receive that takes a job while more are ready
// wakes the next blocked one.
func Receive[T any](ctx context.Context, c *Core, src Source[T]) (*consumer.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	for {
		if c.st != open {
			c.mu.Unlock()
			return nil, c.ErrClosed("receive from")
		}
		if c.CanTakeLocked() {
			src.PromoteDue()
			if it, ok := src.TakeReady(); ok {
				if src.ReadyLen() > 0 {
					c.KickLocked() // pass the baton to the next blocked Receive
				}
				c.mu.Unlock()
				return src.Deliver(it), nil
			}
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if c.CanTakeLocked() {
			if wait, ok := src.NextDue(); ok {
				timer = time.NewTimer(wait)
				fire = timer.C
			}
		}
		c.waiters++
		c.mu.Unlock()
		select {
		case <-c.sig:
		case <-fire:
		case <-c.done:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		c.mu.Lock()
		c.waiters--
		if err := ctx.Err(); err != nil {
			c.KickLocked() // we may have taken the wake-up meant for someone else
			c.mu.Unlock()
			return nil, err
		}
	}
}

// ReceiveReady hands out, without waiting, the jobs that Receive would
// hand out right now (consumer.ReadyReceiver): at most max deliveries,
// appended to dst in the order successive Receive calls would return
// them. Each is the delivery Receive would have built. The batch stops
// where Receive would block: at the prefetch cap and when no job is
// ready; and it leaves one ready job for each Receive that is waiting, so
// that a few jobs spread over the pipeline's slots. dst comes back
// unchanged when max < 1, the queue is paused or Close has started, or
// nothing is ready. The mutex is taken once for the whole batch; when jobs
// are still ready after it, a blocked Receive is woken.
func ReceiveReady[T any](c *Core, src Source[T], dst []*consumer.Delivery, max int) []*consumer.Delivery {
	if max < 1 {
		return dst
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != open || c.paused {
		return dst
	}
	// Paused and due jobs are checked once: neither changes while the
	// mutex is held. The prefetch cap does, with each job taken.
	src.PromoteDue()
	for ; max > 0 && c.active < c.cfg.Prefetch && src.ReadyLen() > c.waiters; max-- {
		it, ok := src.TakeReady()
		if !ok {
			break
		}
		dst = append(dst, src.Deliver(it))
	}
	if src.ReadyLen() > 0 {
		c.KickLocked() // pass the baton to the next blocked Receive
	}
	return dst
}
