package kafkajobs

import (
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// ReceiveReady hands out, without waiting, the records Receive would hand
// out right now (consumer.ReadyReceiver). It appends to dst at most max
// deliveries, in the order successive Receive calls would return them
// (round-robin over partitions, offset order within one), and returns dst.
//
// Ready means fetched and held locally (polled from kgo) and eligible
// under the same rules as Receive, which picks through the same code
// (pickLocked), each pick seeing the ones before it as handed out:
//   - ordering: partition: at most one record of a partition is out, so a
//     batch holds the next record of partitions that have none out (one
//     per partition), never a second one of a partition;
//   - ordering: key: at most one record of a key is out, so a batch holds
//     records with different keys, of one partition or several, each the
//     next one of its key;
//   - a record waiting for an in-place retry or for its dead-letter copy
//     holds back the later ones of its partition (or key), a delayed
//     record comes out only once due and, if later records passed it,
//     only when none of them is out; nothing comes from a partition being
//     revoked.
//
// Each delivery is built and counted as Receive does (handOutLocked):
// same fields and attempt, active until its once-only Settle runs (an
// auto-ack record is done on receipt, its Settle does nothing), settled
// with the same effects and committed as part of its partition's done
// prefix. An auto-ack record frees its partition (or key) at once, but the
// next record of that partition (or key) is left to the next call.
//
// It never waits and never fetches: records still at the broker or in
// kgo's buffer are not ready (the poller fetches while a Receive waits).
// It leaves one ready record to each Receive call that is waiting, so
// that a few records are spread over the pipeline's slots (and so over
// workers) instead of queueing behind each other on one, and wakes those
// calls. dst comes back unchanged when max < 1, on a push-only pipeline,
// once Close began, or when nothing is ready. The driver has no pause of
// its own (it is not a consumer.Pauser): a paused pipeline stops calling
// it; partitions paused at the broker by flow control still hand out the
// records they hold, as in Receive.
func (d *Driver) ReceiveReady(dst []*consumer.Delivery, max int) []*consumer.Delivery {
	c := d.cons
	if c == nil || max < 1 {
		return dst
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return dst
	}
	// Pick as successive Receive calls would: each pick is marked out so
	// that the next one sees its partition (or key) busy. The picks past
	// what this call hands out are put back for the waiting Receives.
	var buf [16]readyPick
	picks := buf[:0]
	rr := c.rr
	for len(picks) < max+c.waiters {
		ps, e := c.pickLocked(now)
		if e == nil {
			break
		}
		picks = append(picks, readyPick{ps: ps, e: e, deferred: e.deferred, rr: c.rr})
		e.state = stateOut
	}
	n := min(max, len(picks)-c.waiters)
	if n < 0 {
		n = 0
	}
	if n < len(picks) {
		for _, p := range picks[n:] {
			p.e.state, p.e.deferred = statePending, p.deferred
		}
		if n > 0 {
			rr = picks[n-1].rr
		}
		c.rr = rr
		c.notifyLocked() // the waiting Receive calls take the rest
	}
	for _, p := range picks[:n] {
		dst = append(dst, d.handOutLocked(p.ps, p.e, now))
	}
	return dst
}

// readyPick is one record ReceiveReady picked: deferred is the entry's
// flag before the pick, rr the round-robin position after it, so that a
// pick can be put back as if it had not been made.
type readyPick struct {
	ps       *partState
	e        *entry
	deferred bool
	rr       int
}
