package boltjobs

import (
	"context"
	"fmt"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/internal/localq"
)

// settle carries out an outcome for the item's current delivery (the
// Delivery runs it at most once per hand-out). An ack or a release is
// queued for the next commit, which follows within one fsync: settle does
// not wait for it, and the delivery's WhenFinal tells when it is on disk
// (a crash before then runs the job again). Retry, Requeue and Dead wait
// for their commit, until ctx ends: a job's attempts and its death are
// never lost.
func (q *Queue) settle(ctx context.Context, it *item, o consumer.Outcome) error {
	w, wait, err := q.settleLocked(it, o)
	if !wait || err != nil {
		return err
	}
	if _, err := w.wait(ctx); err != nil {
		return fmt.Errorf("boltjobs: settle job %q (%s): %w", it.rec.id, o.Action, err)
	}
	return nil
}

// settleLocked applies o under q.mu and returns the commit that carries
// it (nil: nothing to write), recorded as the item's for WhenFinal, and
// whether settle waits for it.
func (q *Queue) settleLocked(it *item, o consumer.Outcome) (_ *commitWait, wait bool, _ error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.core.IsClosed() {
		return nil, false, q.core.ErrClosed("settle on")
	}
	if it.state != localq.Active {
		return nil, false, fmt.Errorf("boltjobs: settle job %q: %w", it.rec.id, ErrNotActive)
	}
	q.core.SettledLocked()
	var (
		err error
		w   *commitWait
	)
	switch o.Action {
	case consumer.Ack:
		w = q.s.enqueue(q.dropMarks([]op{{q: q, kind: opDelete, seq: it.seq}}, false, it)...)
		wait = false
		q.finish(it)
		it.rec.payload, it.rec.headers = nil, nil
	case consumer.Dead:
		dr := deadRecord{reason: consumer.TruncateReason(o.Reason), at: now(), rec: it.rec}
		w, wait = q.s.enqueue(q.dropMarks([]op{{q: q, kind: opDead, seq: it.seq, val: dr.encode(nil)}}, false, it)...), true
		q.deadN++
		if q.deadN > DeadListCap {
			q.s.enqueue(op{q: q, kind: opTrimDead, seq: uint64(q.deadN - DeadListCap)})
			q.deadN = DeadListCap
		}
		q.finish(it)
		it.rec.payload, it.rec.headers = nil, nil
	case consumer.Retry, consumer.Requeue:
		it.rec.attempt++
		it.rec.headers = consumer.MergeHeaders(it.rec.headers, o.Headers)
		w, wait = q.requeue(it, o.Delay, true), true
	case consumer.Release:
		w = q.requeue(it, o.Delay, o.Delay > 0)
	default:
		q.requeue(it, 0, false)
		err = fmt.Errorf("boltjobs: settle job %q: %w: %v", it.rec.id, consumer.ErrUnknownAction, o.Action)
	}
	it.mark = markNone
	it.settledIn = w
	return w, wait, err
}

// whenFinal runs fn once the outcome of it's last settlement is on disk
// (consumer.Delivery.WhenFinal). A later settlement of a new hand-out of
// the same job can only be in the same commit or a later one.
func (q *Queue) whenFinal(it *item, fn func(error)) {
	q.mu.Lock()
	w := it.settledIn
	q.mu.Unlock()
	q.s.whenDone(w, fn)
}

// requeue puts a settled item back: after delay, or at once at its
// original position; rewrite says its record changed. Its lane, if any,
// stays blocked. It returns the commit that carries the change, nil when
// nothing changed. Caller holds q.mu.
func (q *Queue) requeue(it *item, delay time.Duration, rewrite bool) *commitWait {
	t := now()
	it.rec.due = 0
	if delay > 0 {
		it.rec.due = t + int64(delay)
		it.rec.enq = it.rec.due
	}
	var w *commitWait
	// A mark counts while the record keeps the attempt it was made at: a
	// rewrite with the next attempt voids it, else its set drops it.
	stays := it.set != nil && it.set.att[it.setIdx] == it.rec.attempt
	switch {
	case rewrite:
		w = q.s.enqueue(q.dropMarks([]op{{q: q, kind: opPut, seq: it.seq, val: it.rec.encode(nil)}}, stays, it)...)
	case it.set != nil:
		q.s.enqueue(q.dropMarks(nil, stays, it)...)
	}
	it.mark = markNone
	q.schedule(it, t)
	return w
}

// finish marks it done and lets the next job of its lane go. Caller holds
// q.mu.
func (q *Queue) finish(it *item) {
	it.state = localq.Done
	l := it.lane
	if l == nil {
		return
	}
	it.lane = nil
	if next, _, ok := q.lanes.Next(l); ok {
		q.schedule(next, now())
	}
}

// Stat reports the queue's numbers: Ready counts jobs waiting to be
// handed out (including keyed jobs waiting behind their lane), Delayed the
// jobs waiting for a delay, Active the deliveries handed out and not
// settled; Queue is the file. Consuming is false while paused or closed.
// It never fails.
func (q *Queue) Stat(_ context.Context) (consumer.Stat, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.delayed.Len() > 0 {
		q.promoteDue(now())
	}
	return q.core.StatLocked(q.s.path, q.ready.Len()+q.ahead.Len()+q.lanes.Pending(), q.delayed.Len()), nil
}

// Pause stops Receive and ReceiveReady from handing out jobs until
// Resume; blocked Receive calls keep waiting. Publish and Settle keep
// working. The running marks of jobs marked ahead are taken off the file
// by the next commit (Pause does not wait for it): a crash while paused
// counts the attempts of the jobs handed out only. It is idempotent and
// returns consumer.ErrClosed on a closed queue.
func (q *Queue) Pause(ctx context.Context) error {
	if err := q.core.Pause(ctx); err != nil {
		return err
	}
	q.mu.Lock()
	q.dropAhead()
	q.mu.Unlock()
	return nil
}

// Resume undoes Pause. It is idempotent and returns consumer.ErrClosed on
// a closed queue.
func (q *Queue) Resume(ctx context.Context) error { return q.core.Resume(ctx) }

// Check returns nil while the queue is open and consumer.ErrClosed after
// Close.
func (q *Queue) Check() error { return q.core.Check() }

// Close stops the queue: Receive and Publish return consumer.ErrClosed at
// once, blocked Receive calls included. Deliveries already handed out can
// still be settled while Close waits for them, until ctx is done. Then
// every change is committed, the running marks of jobs marked ahead and
// not handed out taken off, and the queue leaves its file (the last queue
// of a file closes it). Jobs not acked stay in the file for the next open;
// a job still handed out when ctx ended keeps its running mark, so its
// attempt is counted at the next open. After Close, Settle returns
// consumer.ErrClosed. Close is idempotent.
func (q *Queue) Close(ctx context.Context) error {
	last, err := q.core.Close(ctx, nil)
	if !last {
		return nil
	}
	q.mu.Lock()
	q.dropAhead()
	q.mu.Unlock()
	if derr := q.s.detach(q); derr != nil {
		return derr
	}
	return err
}
