package memjobs

import (
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/internal/localq"
)

// ReceiveReady hands out, without waiting, the jobs that Receive would hand
// out right now (consumer.ReadyReceiver). It appends to dst at most max
// deliveries, in the order successive Receive calls would return them, and
// returns dst.
//
// Each delivery is the one Receive would have built: same fields and
// Attempt, counted active until its once-only Settle runs (auto-ack jobs
// are settled on receipt and not counted), settled with the same effects.
// The batch stops where Receive would block: at the prefetch cap and when
// no job is ready; and it leaves one ready job for each Receive that is
// waiting, so that a few jobs are spread over the pipeline's slots (and
// so over workers) instead of queueing behind each other. A keyed job comes out only while no other job of its
// key is handed out, and a delayed job only once its delay has passed. dst
// comes back unchanged when max < 1, the queue is paused or closed
// (Close called), or nothing is ready.
//
// The queue's lock is taken once for the whole batch, and nothing is
// allocated but the deliveries (and dst, should it need to grow: pass one
// with room for max). When jobs are still ready after the batch, a blocked
// Receive is woken, as Receive itself passes the baton.
func (q *Queue) ReceiveReady(dst []*consumer.Delivery, max int) []*consumer.Delivery {
	return localq.ReceiveReady(&q.core, (*source)(q), dst, max)
}

// source is the Queue as localq sees its jobs (localq.Source); its
// methods but deliver run with q.mu held.
type source Queue

// taken is a job handed out, with its key and enqueue time read under
// q.mu.
type taken struct {
	it  *item
	key string
	at  time.Time
}

// PromoteDue moves the delayed jobs that are due to the ready set.
func (s *source) PromoteDue() {
	q := (*Queue)(s)
	if q.delayed.Len() > 0 {
		q.promoteDue(q.now())
	}
}

// TakeReady takes the most urgent ready job (see Queue.takeReady).
func (s *source) TakeReady() (taken, bool) {
	q := (*Queue)(s)
	it, key := q.takeReady()
	if it == nil {
		return taken{}, false
	}
	return taken{it: it, key: key, at: q.enqueuedLocked(it.seq)}, true
}

// ReadyLen counts the ready jobs.
func (s *source) ReadyLen() int { return s.ready.len() }

// NextDue is the wait until the earliest delayed job is due.
func (s *source) NextDue() (time.Duration, bool) {
	if s.delayed.Len() == 0 {
		return 0, false
	}
	return time.Duration(s.delayed.Top().K1 - (*Queue)(s).now()), true
}

// Deliver wraps a taken job.
func (s *source) Deliver(t taken) *consumer.Delivery {
	d := (*Queue)(s).deliver(t.it, t.key)
	d.Enqueued = t.at
	return d
}
