package amqpjobs

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// feed is one basic.consume on a session. Receive reads its deliveries
// straight from amqp091's channel, so a delivery costs no hand-over
// between goroutines. Once stop is closed nothing read from msgs is
// handed out any more: stopConsuming (and a Receive that lost the race)
// returns it to the broker.
type feed struct {
	s    *session
	msgs <-chan amqp.Delivery
	stop chan struct{} // closed by stopConsuming
	// turn, when the session tracks tags (multiple_ack, or acks held),
	// is held (cap 1) by the Receive that reads msgs, from the read until
	// the tag is tracked, so tags are tracked in delivery order (an ack
	// with multiple=true must not cover a delivery read but not tracked
	// yet). Otherwise it is nil and every Receive waits on msgs itself.
	turn chan struct{}
}

// stopped reports whether stopConsuming has started on f.
func (f *feed) stopped() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// takeTurn takes f's turn if it is free, without waiting.
func (f *feed) takeTurn() bool {
	select {
	case f.turn <- struct{}{}:
		return true
	default:
		return false
	}
}

// done gives up the turn taken for one read (no-op without turns).
func (f *feed) done() {
	if f.turn != nil {
		<-f.turn
	}
}

// currentFeed returns the feed Receive reads (nil while not consuming)
// and a channel closed when it is replaced.
func (d *Driver) currentFeed() (*feed, <-chan struct{}) {
	d.feedMu.Lock()
	defer d.feedMu.Unlock()
	return d.feed, d.feedChanged
}

// setFeed makes f the feed of Receive (nil: none) and wakes every
// Receive waiting on the old one; from is the feed it replaces, and
// nothing happens when another feed was installed meanwhile.
func (d *Driver) setFeed(from, f *feed) {
	d.feedMu.Lock()
	defer d.feedMu.Unlock()
	if d.feed != from {
		return
	}
	d.feed = f
	close(d.feedChanged)
	d.feedChanged = make(chan struct{})
}

// Receive blocks until a delivery is available, ctx is done (ctx.Err()) or
// the driver is closed (consumer.ErrClosed). While the broker is
// unreachable or the driver is paused it keeps waiting. A pipeline without
// queue gets ErrNotConsuming.
func (d *Driver) Receive(ctx context.Context) (*consumer.Delivery, error) {
	if !d.cfg.Consumes() {
		return nil, ErrNotConsuming
	}
	for {
		select {
		case <-d.closing:
			return nil, consumer.ErrClosed
		default:
		}
		f, changed := d.currentFeed()
		if f == nil || f.stopped() {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-d.closing:
				return nil, consumer.ErrClosed
			}
		}
		if f.turn != nil && !f.takeTurn() {
			select {
			case f.turn <- struct{}{}:
			case <-f.stop:
				continue
			case <-changed:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-d.closing:
				return nil, consumer.ErrClosed
			}
		}
		in, ok, err := d.take(ctx, f, changed)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if del := d.deliver(in); del != nil {
			return del, nil
		}
	}
}

// take reads one delivery of f (holding its turn, if it has one). It
// reports false with a nil error when the feed ended, was replaced or
// stopped (the caller looks again), and gives back a delivery read after
// f was stopped or Close started. A delivery of a dead session is never
// handed out: amqp091 may still offer what it had buffered after the
// channel closed, and the broker redelivers it anyway (a job run now
// would run twice).
func (d *Driver) take(ctx context.Context, f *feed, changed <-chan struct{}) (inbound, bool, error) {
	var (
		m     amqp.Delivery
		ok    bool
		gone  bool
		ready bool
	)
	if held := int64(f.s.acks.held.Load()); held > 0 && held+d.outstanding.Load() >= int64(d.cfg.Prefetch) {
		// The held acks close the broker's window: nothing more comes
		// until they are written. amqp091's buffer goroutine offers its
		// next delivery only once it has run again: let it, then look
		// once more before writing them.
		if m, ok, ready = poll(f.msgs); !ready {
			runtime.Gosched()
			if m, ok, ready = poll(f.msgs); !ready {
				_ = f.s.flushAcks()
			}
		}
	}
	if !ready {
		// Mostly a delivery is on offer: take it without the cost of
		// the select below (the checks after the read cover a feed
		// stopped or a Close begun meanwhile).
		m, ok, ready = poll(f.msgs)
	}
	if !ready {
		select {
		case m, ok = <-f.msgs:
		case <-f.stop:
			gone = true
		case <-changed:
			gone = true
		case <-ctx.Done():
			f.done()
			return inbound{}, false, ctx.Err()
		case <-d.closing:
			f.done()
			return inbound{}, false, consumer.ErrClosed
		}
	}
	if ok {
		f.s.track(m.DeliveryTag)
		d.handOut()
	}
	f.done()
	if gone {
		return inbound{}, false, nil
	}
	if !ok {
		// Cancelled or the channel died: wait for the next feed.
		select {
		case <-changed:
			return inbound{}, false, nil
		case <-ctx.Done():
			return inbound{}, false, ctx.Err()
		case <-d.closing:
			return inbound{}, false, consumer.ErrClosed
		}
	}
	if !f.stopped() && !d.isClosing() && !f.s.dead() {
		return inbound{s: f.s, m: m}, true, nil
	}
	d.settledOne()
	d.giveBack(f.s, &m)
	return inbound{}, false, nil
}

// isClosing reports whether Close has started.
func (d *Driver) isClosing() bool {
	select {
	case <-d.closing:
		return true
	default:
		return false
	}
}

// poll reads msgs without waiting; ready is false when nothing is on offer.
func poll(msgs <-chan amqp.Delivery) (m amqp.Delivery, ok, ready bool) {
	select {
	case m, ok = <-msgs:
		return m, ok, true
	default:
		return m, false, false
	}
}

// startConsuming starts the consumer on s and makes it Receive's feed. The
// caller holds d.consumeMu.
func (d *Driver) startConsuming(s *session) error {
	s.mu.Lock()
	running := s.feed != nil
	s.mu.Unlock()
	if running || s.ch == nil || s.dead() {
		return nil
	}
	msgs, err := s.ch.Consume(d.cfg.Queue, d.tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("basic.consume %q: %w", d.cfg.Queue, err)
	}
	f := &feed{s: s, msgs: msgs, stop: make(chan struct{})}
	if s.tracks {
		f.turn = make(chan struct{}, 1)
	}
	s.mu.Lock()
	s.feed = f
	s.mu.Unlock()
	d.feedMu.Lock()
	from := d.feed
	d.feedMu.Unlock()
	d.setFeed(from, f)
	return nil
}

// stopConsuming cancels the consumer of s and waits until every delivery
// that was not handed out has gone back to the broker (basic.nack with
// requeue). The caller holds d.consumeMu. When ctx ends first, the
// draining goes on in the background (owned by d.wg) until the
// deliveries channel closes.
func (d *Driver) stopConsuming(ctx context.Context, s *session) error {
	s.mu.Lock()
	f := s.feed
	s.feed = nil
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	var err error
	if !s.dead() {
		_ = s.flushAcks()
		// Waits for cancel-ok: every delivery sent before it is buffered.
		if cerr := s.ch.Cancel(d.tag, false); cerr != nil && !s.dead() {
			err = fmt.Errorf("basic.cancel: %w", cerr)
		}
	}
	close(f.stop)
	d.setFeed(f, nil)
	if err != nil {
		// The consumer may still be active; close the channel so the
		// broker takes its deliveries back and msgs closes.
		s.kill()
	}
	done := make(chan struct{})
	d.wg.Go(func() {
		defer close(done)
		for m := range f.msgs {
			d.giveBack(s, &m)
		}
	})
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
	return err
}
