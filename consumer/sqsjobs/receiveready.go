package sqsjobs

import "github.com/pipevisor/pipevisor/consumer"

var _ consumer.ReadyReceiver = (*Driver)(nil)

// ReceiveReady hands out, without waiting, the deliveries Receive would
// hand out right now (consumer.ReadyReceiver): messages already received
// and buffered whose turn it is. It appends to dst at most max of them,
// in the order successive Receive calls would return them, and returns
// dst.
//
// Each delivery is the one Receive builds: same fields and Attempt,
// counted active until its once-only Settle runs, kept invisible by the
// heartbeat until then, and settled with the same effects (auto-ack
// messages were deleted on receipt, as for Receive). Receive's rules
// hold: on a FIFO queue only the head of a message group is ready, and
// the group's next message only once that one was settled, so never two
// messages of a group are out; a message that waited in the buffer until
// the heartbeat made it visible again is no longer there to hand out. It
// leaves one ready message for each Receive call waiting, so that a few
// jobs are spread over the pipeline's slots. dst comes back unchanged
// when max < 1, Close was called, or nothing is ready. The driver has no
// pause of its own (it is no consumer.Pauser): a paused pipeline calls
// neither Receive nor ReceiveReady.
//
// ReceiveReady never calls SQS and makes the poller fetch nothing, but it
// tells the poller what its caller takes. Once it was called with max m,
// a poll for waiting Receive calls asks for m more messages per call
// (within the prefetch), so that the batch that follows a Receive is
// buffered when that Receive returns: messages are fetched only for a
// slot about to run them. A ReceiveReady that finds nothing ready fetches
// nothing ahead: with every slot busy such messages would wait unclaimed,
// hidden from other consumers (and, on a FIFO queue, locking their
// groups), go back at half of their visibility timeout and be received a
// second time, which SQS counts against a redrive policy's
// maxReceiveCount. Messages fetched for a batch that is not taken (the
// pipeline paused between Receive and ReceiveReady) go back when half of
// their visibility timeout has passed, as those fetched for a Receive
// that gave up, and their receive is not counted as an attempt.
func (d *Driver) ReceiveReady(dst []*consumer.Delivery, max int) []*consumer.Delivery {
	if max < 1 {
		return dst
	}
	var buf [MaxPrefetch]*entry // the buffer never holds more than this
	for _, e := range d.st.takeReady(buf[:0], max) {
		dst = append(dst, d.delivery(e))
	}
	return dst
}

// takeReady is take without waiting: it appends to dst up to max ready
// messages, handed out, leaving one for each waiting take. It records max
// (at most MaxPrefetch) as the batch that reserve adds per waiting take;
// it never makes reserve ask for anything while no take waits. After
// Close began it does nothing.
func (s *state) takeReady(dst []*entry, max int) []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || max < 1 {
		return dst
	}
	batch := min(max, MaxPrefetch)
	grew := batch > s.batch
	s.batch = batch
	n := len(dst)
	for len(dst)-n < max && len(s.ready) > s.waiters {
		dst = append(dst, s.handOutLocked())
	}
	if len(dst) > n || (grew && s.waiters > 0) {
		// The buffer shrank, or waiting takes now want a larger batch:
		// the poller may ask again (for waiting takes only).
		s.broadcastLocked()
	}
	return dst
}
