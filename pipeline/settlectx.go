package pipeline

import (
	"context"
	"sync"
	"time"
)

// settleCtx is the context a Settle call gets: it carries the values of
// its parent (which is never cancelled), has a deadline SettleTimeout
// ahead, and is cancelled when the call returns.
//
// It behaves like context.WithTimeout, but the timer that closes Done is
// armed only when a driver asks for Done: most settlements (the memory
// driver's, a batched ack) never wait on their context, and a timer per
// job was a measurable part of the pipeline's per-job cost. Err reports
// DeadlineExceeded once the deadline has passed even when nobody asked
// for Done.
type settleCtx struct {
	context.Context // the parent; never cancelled

	deadline time.Time

	mu    sync.Mutex
	done  chan struct{} // created by Done; closed when the context ends
	timer *time.Timer   // armed by Done when the deadline is ahead
	err   error
}

// newSettleCtx returns a context ending timeout after now (the caller's
// current time, which it had at hand).
func newSettleCtx(parent context.Context, now time.Time, timeout time.Duration) *settleCtx {
	return &settleCtx{Context: parent, deadline: now.Add(timeout)}
}

// Deadline returns the time the settlement must be done by.
func (c *settleCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done returns a channel closed when the deadline passes or the
// Settle call returned. The first call arms the timer.
func (c *settleCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	switch d := time.Until(c.deadline); {
	case c.err != nil:
		close(c.done)
	case d > 0:
		c.timer = time.AfterFunc(d, c.expire)
	default:
		c.endLocked(context.DeadlineExceeded)
	}
	return c.done
}

// Err is nil until the context ends, then DeadlineExceeded or Canceled.
func (c *settleCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.timer == nil && !time.Now().Before(c.deadline) {
		c.endLocked(context.DeadlineExceeded)
	}
	return c.err
}

func (c *settleCtx) expire() {
	c.mu.Lock()
	c.endLocked(context.DeadlineExceeded)
	c.mu.Unlock()
}

// cancel ends the context (Canceled, unless the deadline came first) and
// stops its timer. Called once the Settle call returned.
func (c *settleCtx) cancel() {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.endLocked(context.Canceled)
	c.mu.Unlock()
}

// endLocked records err as the end of the context, once, and closes done
// if it exists (a later Done creates it closed): most settlements never
// ask for Done, and then no channel is made. Called with c.mu held.
func (c *settleCtx) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
}
