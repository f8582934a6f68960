package amqpjobs

import (
	"context"
	"slices"
	"sync/atomic"
	"time"
)

// Acks are the one broker write every job costs, and on a busy loopback
// or LAN a write is most of a job's CPU. So an Ack settled while more work
// follows is held for a moment and written together with the acks settled
// around it: one basic.ack with multiple=true for the held tags below the
// oldest delivery still out (running, or held in a batch), and one frame
// each for the few above it. Those few are mostly acks of jobs that
// finished while an older one still runs, which a multiple ack covers a
// moment later: so a timed or full flush keeps them held (carried) rather
// than write a frame for each, for up to ackDelay from the first flush
// that carried them; the flush after that writes whatever is left. The
// held acks are written
//
//   - once ackDelay has passed since the first of them (flushLoop); a
//     carried ack waits up to one ackDelay more,
//   - once ackBatch(prefetch) of them are held (so the broker keeps
//     sending: it counts them as unacked until then),
//   - when a Receive finds nothing to hand out (the pipeline is idle),
//   - before the consumer is cancelled (Pause, a requeue in place, Close)
//     and with any ack that cannot wait (see deferrable).
//
// An ack held when the channel dies is lost with it: RabbitMQ redelivers
// the job, and deliver recognises the copy by its pv_msg (remembered in
// Driver.acked when Settle returned) and acks it without running it. Only
// a supervisor killed within ackDelay of an ack (twice that for a carried
// one) runs such a job again.

// ackDelay is the longest an ack is held (Driver.ackDelay; tests change
// it).
const ackDelay = 2 * time.Millisecond

// ackBatch returns how many acks may be held at once for a prefetch: a
// quarter of it, so the broker's window never closes by more than that.
// Below 2 acks are written at once.
func ackBatch(prefetch int) int {
	return prefetch / 4
}

// ackState is the held acks of a session; its fields are guarded by
// session.mu, except held and since, which Receive reads without it.
type ackState struct {
	limit    int      // most acks held; 0: every ack is written at once
	deferred []uint64 // tags acked by Settle whose frame is not written yet
	// carriedAt is when a flush first kept acks above a running job
	// held (UnixNano; 0: none are carried). Flushes keep doing so for
	// delay from then, the first after writes them all.
	carriedAt int64
	delay     time.Duration
	held      atomic.Int32
	since     atomic.Int64 // UnixNano of the oldest held ack
	kick      chan<- struct{}
}

// ackLocked settles tag as acked: it is held when hold is set and fewer
// than the limit are held, else written now with every held ack. The
// caller holds s.mu and tracks tags.
func (s *session) ackLocked(tag uint64, hold bool) error {
	delete(s.unsettled, tag)
	s.acks.deferred = append(s.acks.deferred, tag)
	n := len(s.acks.deferred)
	if hold && n < s.acks.limit {
		if n == 1 {
			s.acks.since.Store(time.Now().UnixNano())
			select {
			case s.acks.kick <- struct{}{}:
			default:
			}
		}
		s.acks.held.Store(int32(n))
		return nil
	}
	return s.flushLocked(!hold)
}

// flushLocked writes the held acks: one basic.ack with multiple=true for
// the held tags below the lowest unsettled one (a multiple ack covers
// every unacked tag up to it, and each tag below the lowest unsettled one
// is settled: acked here, or its own nack has gone out), and one frame
// each for the others. Unless all is set, those others stay held
// (carried) instead while less than the session's ackDelay has passed
// since a flush first carried acks; a multiple ack of a later flush
// mostly covers them. The caller holds s.mu. It returns the first write
// error; the held acks are forgotten after an error (a failed write means
// the channel is gone and the broker redelivers them).
func (s *session) flushLocked(all bool) error {
	d := s.acks.deferred
	if len(d) == 0 {
		return nil
	}
	low := ^uint64(0)
	for t := range s.unsettled {
		low = min(low, t)
	}
	slices.Sort(d)
	below, _ := slices.BinarySearch(d, low)
	var err error
	if below > 0 {
		err = s.ch.Ack(d[below-1], true)
	}
	rest := len(d) - below
	if err == nil && !all && rest > 0 {
		now := time.Now().UnixNano()
		if s.acks.carriedAt == 0 {
			s.acks.carriedAt = now
		}
		if now-s.acks.carriedAt < int64(s.acks.delay) {
			s.acks.deferred = append(d[:0], d[below:]...)
			s.acks.held.Store(int32(rest))
			// The timer writes them delay after they were first
			// carried.
			s.acks.since.Store(s.acks.carriedAt)
			select {
			case s.acks.kick <- struct{}{}:
			default:
			}
			return nil
		}
	}
	for _, t := range d[below:] {
		if e := s.ch.Ack(t, false); err == nil {
			err = e
		}
	}
	s.acks.deferred = d[:0]
	s.acks.carriedAt = 0
	s.acks.held.Store(0)
	return err
}

// flushAcks writes every held ack of s, if any.
func (s *session) flushAcks() error {
	return s.flush(true)
}

// flush writes the held acks of s, if any; without all, those above a
// running job may be carried (flushLocked).
func (s *session) flush(all bool) error {
	if s.acks.held.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked(all)
}

// flushDue writes the held acks of s once the oldest is delay old.
func (s *session) flushDue(now time.Time, delay time.Duration) {
	if s.acks.held.Load() == 0 || now.UnixNano()-s.acks.since.Load() < int64(delay) {
		return
	}
	_ = s.flush(false)
}

// flushLoop writes held acks of the current session d.ackDelay after the
// first of them was held, until ctx is done. New starts it; Close owns it.
func (d *Driver) flushLoop(ctx context.Context, kick <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		t.Reset(d.ackDelay)
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if s := d.current(); s != nil {
				s.flushDue(now, d.ackDelay)
				if s.acks.held.Load() > 0 {
					// Held after the timer was set: look again.
					select {
					case d.ackKick <- struct{}{}:
					default:
					}
				}
			}
		}
	}
}
