package memjobs

import "github.com/pipevisor/pipevisor/consumer"

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
	if max < 1 {
		return dst
	}
	q.mu.Lock()
	if q.st != open || q.paused {
		q.mu.Unlock()
		return dst
	}
	if q.delayed.Len() > 0 {
		q.promoteDue(q.now())
	}
	// As take, but paused and due jobs are checked once: neither changes
	// while q.mu is held. The prefetch cap does, with each job taken.
	for ; max > 0 && q.active < q.cfg.Prefetch && q.ready.len() > q.waiters; max-- {
		it, key := q.takeReady()
		if it == nil {
			break
		}
		d := q.deliver(it, key)
		d.Enqueued = q.enqueuedLocked(it.seq)
		dst = append(dst, d)
	}
	if q.ready.len() > 0 {
		q.kick() // pass the baton to the next blocked Receive
	}
	q.mu.Unlock()
	return dst
}
