package sqsjobs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// entry is one received message, from receipt until it is settled or
// released.
type entry struct {
	msg   types.Message // as received: receipt handle, attributes
	md    meta
	group string // FIFO message group; "" on standard queues
	// enqueued is when the job became due (Driver.enqueued).
	enqueued time.Time

	// hb serialises visibility changes of the heartbeat with the settle
	// that takes the message over; done is guarded by it.
	hb   sync.Mutex
	done bool
	// visibleUntil is when SQS makes the message visible again, in Unix
	// nanoseconds (as seen before the call that set it).
	visibleUntil atomic.Int64

	handed bool // guarded by state.mu
	// unspent is how many earlier receives of this message handed no job
	// out (released buffered messages, Release outcomes): they are not
	// attempts, so Attempt is ApproximateReceiveCount minus unspent.
	unspent int
}

// claim takes the message over from the heartbeat: after it returns true
// the heartbeat never touches e again. It returns false when e was
// claimed already.
func (e *entry) claim() bool {
	e.hb.Lock()
	defer e.hb.Unlock()
	if e.done {
		return false
	}
	e.done = true
	return true
}

// group is the FIFO bookkeeping of one message group: busy while its head
// is ready or handed out; queue holds its later messages, in order.
type group struct {
	busy  bool
	queue []*entry
}

// state is the consumer side of the driver: Receive calls waiting, the
// messages received and not handed out, the FIFO groups, and what the
// heartbeat must keep invisible. All methods are safe for concurrent use.
type state struct {
	mu        sync.Mutex
	prefetch  int
	fifo      bool
	closing   bool // Close began: Receive returns ErrClosed
	closed    bool // Close finished: Settle returns ErrClosed
	waiters   int  // Receive calls waiting for a message
	ready     []*entry
	groups    map[string]*group
	buffered  int                 // ready plus queued in groups
	requested int                 // asked for by polls under way
	batch     int                 // max of the last ReceiveReady: asked for per waiting Receive
	inflight  map[*entry]struct{} // received and not claimed: heartbeat set
	handed    int                 // handed out and not settled
	changed   chan struct{}       // closed and replaced on every change
	err       error               // last receive error, nil when healthy
	// unspent holds, by MessageId, the receive count to discount the
	// next time this driver receives a message (see entry.unspent).
	unspent map[string]int
}

// maxUnspent bounds the unspent map: messages another consumer took are
// never seen again, so the map is cleared when it grows this large.
const maxUnspent = 10000

func (s *state) init(prefetch int, fifo bool) {
	s.prefetch = prefetch
	s.fifo = fifo
	s.groups = map[string]*group{}
	s.inflight = map[*entry]struct{}{}
	s.changed = make(chan struct{})
	s.unspent = map[string]int{}
}

// forgive records that the current receive of each of es handed no job
// out. Call it before the message is made visible again (so that a
// receive racing with the release sees it), and unforgive when that
// failed.
func (s *state) forgive(es ...*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.unspent)+len(es) > maxUnspent {
		clear(s.unspent)
	}
	for _, e := range es {
		s.unspent[aws.ToString(e.msg.MessageId)] = e.unspent + 1
	}
}

// unforgive undoes forgive for es.
func (s *state) unforgive(es ...*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		delete(s.unspent, aws.ToString(e.msg.MessageId))
	}
}

// takeUnspent returns and forgets the receives of message id that handed
// no job out.
func (s *state) takeUnspent(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.unspent[id]
	delete(s.unspent, id)
	return n
}

// broadcastLocked wakes everyone waiting for a change.
func (s *state) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// reserve returns how many messages a poller may ask for now and counts
// them as requested until received is called (0: wait for ch before
// asking again); ok is false once Close began. What is asked for: one
// message per waiting Receive call, plus batch per waiting call once
// ReceiveReady was used (the batch its caller fills right after). Nothing
// is asked for while no Receive waits: messages fetched ahead of a job
// slot would wait unclaimed and be received a second time. Messages
// already requested, buffered, or queued behind their FIFO group's head
// count against that, and against the prefetch.
func (s *state) reserve() (n int, ch <-chan struct{}, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return 0, nil, false
	}
	queued := s.buffered - len(s.ready)
	want := s.waiters * (1 + s.batch)
	n = min(s.prefetch-s.buffered-s.requested, want-len(s.ready)-queued-s.requested, MaxPrefetch)
	if n <= 0 {
		return 0, s.changed, true
	}
	s.requested += n
	return n, s.changed, true
}

// received ends a reservation of n and files the messages that came
// back: a message is ready unless its FIFO group already has one ready or
// handed out. Auto-ack messages (deleted on receipt) are always ready and
// not kept invisible.
func (s *state) received(n int, es []*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requested -= n
	for _, e := range es {
		s.buffered++
		if e.md.autoAck {
			s.ready = append(s.ready, e)
			continue
		}
		s.inflight[e] = struct{}{}
		if !s.fifo {
			s.ready = append(s.ready, e)
			continue
		}
		g := s.groups[e.group]
		if g == nil {
			g = &group{}
			s.groups[e.group] = g
		}
		if g.busy {
			g.queue = append(g.queue, e)
			continue
		}
		g.busy = true
		s.ready = append(s.ready, e)
	}
	if len(es) > 0 {
		// An empty answer changes nothing anyone waits for; not
		// broadcasting lets the poller pause until a real change.
		s.broadcastLocked()
	}
}

// take hands out the next ready message, waiting until there is one, ctx
// is done (ctx.Err()) or Close began (consumer.ErrClosed).
func (s *state) take(ctx context.Context) (*entry, error) {
	registered := false
	s.mu.Lock()
	for {
		if s.closing {
			if registered {
				s.waiters--
			}
			s.mu.Unlock()
			return nil, consumer.ErrClosed
		}
		if len(s.ready) > 0 {
			e := s.handOutLocked()
			if registered {
				s.waiters--
			}
			s.broadcastLocked()
			s.mu.Unlock()
			return e, nil
		}
		if !registered {
			registered = true
			s.waiters++
			s.broadcastLocked() // wake the poller
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			s.waiters--
			s.broadcastLocked()
			s.mu.Unlock()
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
}

// handOutLocked takes the first ready message out of the buffer and,
// unless it is an auto-ack one (deleted on receipt), counts it handed out
// (kept invisible by the heartbeat until settled). s.ready must not be
// empty; the caller broadcasts.
func (s *state) handOutLocked() *entry {
	e := s.ready[0]
	s.ready[0] = nil
	s.ready = s.ready[1:]
	s.buffered--
	if !e.md.autoAck {
		e.handed = true
		s.handed++
	}
	return e
}

// settled records that the handed-out e was settled. With keepOrder (the
// message left the queue) the next queued message of its FIFO group
// becomes ready; otherwise the group's queued messages are returned,
// claimed, for the caller to make visible again behind e.
func (s *state) settled(e *entry, keepOrder bool) []*entry {
	s.mu.Lock()
	delete(s.inflight, e)
	if e.handed {
		e.handed = false
		s.handed--
	}
	var release []*entry
	if g := s.groups[e.group]; s.fifo && g != nil {
		switch {
		case keepOrder && len(g.queue) > 0:
			next := g.queue[0]
			g.queue = g.queue[1:]
			s.ready = append(s.ready, next)
		default:
			release = g.queue
			s.buffered -= len(release)
			for _, r := range release {
				delete(s.inflight, r)
			}
			delete(s.groups, e.group)
		}
	}
	s.broadcastLocked()
	s.mu.Unlock()
	for _, r := range release {
		r.claim()
	}
	return release
}

// takeBuffered empties the buffer at Close and returns, claimed, the
// messages that must be made visible again, and apart the auto-ack ones:
// deleted on receipt, they are gone from the queue unless sent again.
func (s *state) takeBuffered() (out, autoAck []*entry) {
	s.mu.Lock()
	for _, e := range s.ready {
		if e.md.autoAck {
			autoAck = append(autoAck, e)
		} else {
			out = append(out, e)
		}
	}
	for _, g := range s.groups {
		out = append(out, g.queue...)
		g.queue = nil
	}
	for _, e := range out {
		delete(s.inflight, e)
	}
	s.ready = nil
	s.buffered = 0
	s.broadcastLocked()
	s.mu.Unlock()
	for _, e := range out {
		e.claim()
	}
	return out, autoAck
}

// due sorts the messages whose visibility ends within half of vis: those
// handed out are to be extended; those still buffered (nobody came for
// them, for example while the pipeline is paused) are taken out of the
// buffer, claimed, and returned to be made visible again for any
// consumer. On a FIFO queue a group's buffered messages go back together,
// so that they come back in order.
func (s *state) due(now time.Time, vis time.Duration) (extend, release []*entry) {
	s.mu.Lock()
	limit := now.Add(vis / 2).UnixNano()
	expired := map[*entry]bool{}
	for e := range s.inflight {
		if e.visibleUntil.Load() > limit {
			continue
		}
		if e.handed {
			extend = append(extend, e)
			continue
		}
		expired[e] = true
		if g := s.groups[e.group]; s.fifo && g != nil {
			for _, q := range g.queue {
				expired[q] = true
			}
		}
	}
	if len(expired) > 0 {
		s.ready = slices.DeleteFunc(s.ready, func(e *entry) bool {
			if !expired[e] {
				return false
			}
			if g := s.groups[e.group]; s.fifo && g != nil {
				// The group's head goes back: nothing of it is out.
				for _, q := range g.queue {
					expired[q] = true
				}
				delete(s.groups, e.group)
			}
			return true
		})
		for _, g := range s.groups {
			g.queue = slices.DeleteFunc(g.queue, func(e *entry) bool { return expired[e] })
		}
		for e := range expired {
			delete(s.inflight, e)
			release = append(release, e)
		}
		s.buffered -= len(expired)
		s.broadcastLocked()
	}
	s.mu.Unlock()
	for _, e := range release {
		e.claim()
	}
	return extend, release
}

func (s *state) beginClose() {
	s.mu.Lock()
	s.closing = true
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *state) finishClose() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

func (s *state) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *state) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// waitIdle waits until no delivery is handed out and unsettled.
func (s *state) waitIdle(ctx context.Context) error {
	for {
		s.mu.Lock()
		n, ch := s.handed, s.changed
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%d deliveries unsettled: %w", n, ctx.Err())
		}
	}
}

func (s *state) setHealth(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *state) health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return consumer.ErrClosed
	}
	return s.err
}

// holding returns how many messages the driver keeps invisible: handed
// out or buffered.
func (s *state) holding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

func (s *state) active() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.handed)
}
