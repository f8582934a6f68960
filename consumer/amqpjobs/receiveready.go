package amqpjobs

import (
	"runtime"

	"github.com/pipevisor/pipevisor/consumer"
)

var _ consumer.ReadyReceiver = (*Driver)(nil)

// ReceiveReady hands out, without waiting, the deliveries Receive would
// hand out right now (consumer.ReadyReceiver): those the broker has
// already pushed to this client under basic.qos prefetch that no waiting
// Receive is taking. It appends to dst at most max of them, in the order
// the feed hands them out (queue order), and returns dst.
//
// Each delivery is built as Receive builds it (deliver): same fields,
// attempt and header handling, counted as outstanding until its
// once-only Settle runs, which settles it on the channel it came from.
// Messages Receive would not hand out are not handed out here either, nor
// counted against max: auto-ack jobs whose ack failed and redelivered
// copies of jobs acked before a reconnect (both settled on the spot).
//
// The batch stops wherever Receive would wait: no delivery on offer, no
// feed (paused, redialling, or a pipeline without queue), the feed
// stopped, replaced or ended, and, with multiple_ack, the feed's turn
// held by another Receive (reading around it would track tags out of
// delivery order; the holder is waiting on the feed, or about to take the
// next delivery itself). dst comes back unchanged when max < 1, the
// driver is paused or closing (Close called), or nothing is ready.
//
// amqp091 hands deliveries over an unbuffered channel fed by a goroutine
// that holds the prefetched ones, and that goroutine offers the next one
// only once it has run again after the last hand-over. So when nothing is
// on offer, ReceiveReady yields the processor once (runtime.Gosched) and
// looks again before it gives up. It never waits for the broker or a
// timer; like Receive it writes the ack of an auto-ack job (and of a
// duplicate) before going on, and with multiple_ack tracking a tag takes
// the lock a concurrent ack holds while it writes its frame.
func (d *Driver) ReceiveReady(dst []*consumer.Delivery, max int) []*consumer.Delivery {
	if max < 1 || !d.cfg.Consumes() {
		return dst
	}
	f, changed := d.currentFeed()
	if f == nil {
		return dst
	}
	yielded := false
	for max > 0 {
		in, st := d.takeNow(f, changed)
		switch st {
		case readyNone:
			if yielded {
				return dst
			}
			// The buffer goroutine may hold more but not offer it yet.
			runtime.Gosched()
			yielded = true
			continue
		case readyStop:
			return dst
		}
		yielded = false
		if del := d.deliver(in); del != nil {
			dst = append(dst, del)
			max--
		}
	}
	return dst
}

// closedChan reports whether c is closed (it carries no values).
func closedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// readyState is what takeNow found.
type readyState uint8

const (
	readyTaken readyState = iota // a delivery was taken
	readyNone                    // none on offer right now
	readyStop                    // Receive would wait: stop the batch
)

// takeNow is take without waiting: it reads one delivery of f when one is
// on offer, the feed is still current and running, Close has not started
// and f's turn (multiple_ack) is free, and tracks and counts it as take
// does. A delivery read after f was stopped or Close started, or from a
// dead session, goes back to the broker, as in take.
func (d *Driver) takeNow(f *feed, changed <-chan struct{}) (inbound, readyState) {
	if f.stopped() || closedChan(changed) || d.isClosing() {
		return inbound{}, readyStop
	}
	if f.turn != nil && !f.takeTurn() {
		return inbound{}, readyStop
	}
	m, ok, offered := poll(f.msgs)
	if ok {
		f.s.track(m.DeliveryTag)
		d.handOut()
	}
	f.done()
	switch {
	case offered && !ok:
		return inbound{}, readyStop // cancelled or the channel died
	case !ok:
		return inbound{}, readyNone
	}
	if !f.stopped() && !d.isClosing() && !f.s.dead() {
		return inbound{s: f.s, m: m}, readyTaken
	}
	d.settledOne()
	d.giveBack(f.s, &m)
	return inbound{}, readyStop
}
