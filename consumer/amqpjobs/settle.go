package amqpjobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// settlement carries out the Outcome of one delivery (DESIGN.md, the AMQP
// column of "Settlement per driver").
//
// One allocation per delivery holds it all: the Delivery handed out is
// &settlement.del.
type settlement struct {
	d   *Driver
	in  inbound
	del consumer.Delivery
	dec decoded
}

// settle is the consumer.SettleFunc of a delivery:
//
//   - Ack: basic.ack, held for up to ackDelay and written with the acks
//     settled around it when the prefetch allows (ackbatch.go): one
//     frame with multiple=true for the held tags below the oldest
//     unsettled delivery. Settle returns once the ack is held; the pv_msg
//     of the job is remembered, so its redelivery after a channel died
//     before the write is acked without running again.
//   - Retry with no delay and no header change: basic.nack(requeue=true);
//     the next delivery gets Attempt+1 (remembered in memory).
//   - Retry with a delay, or with changed headers, and Requeue: a
//     confirmed copy with x-attempt = Attempt+1 and the headers merged, to
//     the delay queue (delay > 0) or the work queue, then basic.ack; when
//     the copy fails, basic.nack(requeue=true) and the error.
//     Every copy is the original message with only the driver's
//     bookkeeping changed (copyOf says what that means for each property
//     and header, expiration included).
//   - Dead: with a pipeline dead_letter queue, a confirmed copy there
//     (with x-dead-reason and x-dead-queue), then basic.ack; else
//     basic.nack(requeue=false), which dead-letters through the queue's
//     x-dead-letter-exchange or drops the message.
//   - Release: basic.nack(requeue=true) keeping the attempt; with a delay,
//     a copy with the same attempt through the delay queue.
//
// A delivery of a dead channel returns consumer.ErrStaleDelivery and
// touches nothing (the broker redelivers it); after Close has returned,
// consumer.ErrClosed.
func (st *settlement) settle(ctx context.Context, o consumer.Outcome) error {
	d := st.d
	defer d.settledOne()
	if d.isFinished() {
		st.in.s.untrack(st.in.m.DeliveryTag)
		return consumer.ErrClosed
	}
	if st.in.s.dead() {
		st.in.s.untrack(st.in.m.DeliveryTag)
		return consumer.ErrStaleDelivery
	}
	switch o.Action {
	case consumer.Ack:
		return d.ack(&st.in, true)
	case consumer.Retry:
		if o.Delay <= 0 && st.inPlace(o.Headers) {
			return d.requeueInPlace(ctx, &st.in, st.del.ID, st.del.Attempt+1)
		}
		return st.republish(ctx, o, st.del.Attempt+1)
	case consumer.Requeue:
		return st.republish(ctx, o, st.del.Attempt+1)
	case consumer.Release:
		if o.Delay > 0 {
			return st.republish(ctx, o, st.del.Attempt)
		}
		return d.requeueInPlace(ctx, &st.in, st.del.ID, st.del.Attempt)
	case consumer.Dead:
		return st.dead(ctx, o)
	default:
		return errors.Join(fmt.Errorf("%w: %v", consumer.ErrUnknownAction, o.Action), d.nack(&st.in, true))
	}
}

// inPlace reports whether a Retry can be a plain requeue: the message has
// a stable id (so its attempt can be remembered) and h changes no header
// (x-attempt aside, which the driver tracks itself).
func (st *settlement) inPlace(h map[string][]string) bool {
	if st.dec.thirdParty && st.in.m.MessageId == "" {
		return false
	}
	for k, v := range h {
		if k == hdrAttempt {
			continue
		}
		if cur, ok := st.del.Headers[k]; !ok || !slices.Equal(cur, v) {
			return false
		}
	}
	return true
}

// republish sends a confirmed copy (copyOf) back to the work queue
// (through the delay queue when o.Delay > 0) with x-attempt = attempt,
// then acks the original; if the copy fails the original is requeued.
func (st *settlement) republish(ctx context.Context, o consumer.Outcome, attempt int) error {
	d := st.d
	target := toQueue
	if o.Delay > 0 {
		target = viaDelay
	}
	pub, err := st.copyOf(o, attempt, target, nil)
	if err == nil {
		err = d.publishOne(ctx, message{exchange: "", key: d.cfg.Queue, delay: o.Delay, pub: pub})
	}
	if err != nil {
		return errors.Join(fmt.Errorf("amqpjobs: republish job %q: %w", st.del.ID, err), d.nack(&st.in, true))
	}
	return d.ack(&st.in, false)
}

// dead moves the delivery to the dead-letter target: a confirmed copy
// (copyOf, with x-dead-reason and x-dead-queue) to the dead_letter queue
// and then basic.ack, or without one basic.nack(requeue=false).
func (st *settlement) dead(ctx context.Context, o consumer.Outcome) error {
	d := st.d
	if d.deadLetter == "" {
		return d.nack(&st.in, false)
	}
	err := d.declareDeadLetter(st.in.s)
	if err == nil {
		extra := amqp.Table{HeaderDeadReason: o.Reason, HeaderDeadQueue: d.cfg.Queue}
		var pub amqp.Publishing
		pub, err = st.copyOf(o, st.del.Attempt, toDeadLetter, extra)
		if err == nil {
			err = d.publishOne(ctx, message{exchange: "", key: d.deadLetter, pub: pub})
		}
	}
	if err != nil {
		return errors.Join(fmt.Errorf("amqpjobs: dead-letter job %q to %q: %w", st.del.ID, d.deadLetter, err), d.nack(&st.in, true))
	}
	return d.ack(&st.in, false)
}

// declareDeadLetter makes sure the dead_letter queue exists: an existing
// queue is used as it is, a missing one is declared durable. It runs once
// per session.
func (d *Driver) declareDeadLetter(s *session) error {
	if d.dlqGen.Load() == s.gen {
		return nil
	}
	err := withChannel(s.conn, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(d.deadLetter, false, false, false, false, nil)
		return err
	})
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		err = withChannel(s.conn, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(d.deadLetter, true, false, false, false, nil)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("declare dead_letter queue: %w", err)
	}
	d.dlqGen.Store(s.gen)
	return nil
}

// requeueInPlace returns the delivery to its position in the queue with
// basic.nack(requeue=true) and remembers that its next delivery has
// attempt. Deliveries prefetched after it and not handed out yet would
// otherwise overtake it, so on a classic queue the consumer is cancelled
// first (they go back too, to their own positions) and started again
// afterwards. Quorum and stream queues requeue at the tail anyway.
func (d *Driver) requeueInPlace(ctx context.Context, in *inbound, id string, attempt int) error {
	d.consumeMu.Lock()
	defer d.consumeMu.Unlock()
	in.s.mu.Lock()
	consuming := in.s.feed != nil && d.cfg.keepsPosition()
	in.s.mu.Unlock()
	if consuming {
		// On failure stopConsuming closes the session; the nack below
		// then reports the delivery stale and the broker requeues it.
		_ = d.stopConsuming(ctx, in.s)
	}
	d.attempts.put(id, attempt)
	err := d.nack(in, true)
	if consuming && !d.paused && !d.stopping && !in.s.dead() {
		if serr := d.startConsuming(in.s); serr != nil {
			// The session is unusable; supervise redials.
			in.s.kill()
		}
	}
	return err
}

// ack acks the delivery on its own channel. With hold the ack may be
// held for a moment and written with others (ackbatch.go), but only for a
// message with a pv_msg token: its redelivery, should the channel die
// before the ack is written, is then recognised as done (deliver).
func (d *Driver) ack(in *inbound, hold bool) error {
	tok, hasTok := in.m.Headers[hdrMsg].(string)
	if err := in.s.ack(in.m.DeliveryTag, hold && hasTok); err != nil {
		return staleOr(in.s, "basic.ack", err)
	}
	if hasTok {
		d.acked.put(tok, int(in.s.gen))
	}
	return nil
}

// nack nacks the delivery on its own channel.
func (d *Driver) nack(in *inbound, requeue bool) error {
	if err := in.s.nack(in.m.DeliveryTag, requeue); err != nil {
		return staleOr(in.s, "basic.nack", err)
	}
	return nil
}

// staleOr wraps err as consumer.ErrStaleDelivery when the channel of s is
// gone (the broker requeues the delivery itself). A write that failed on
// the connection (reset, closed) means it is gone too, even before the
// client has noticed and marked the channel dead.
func staleOr(s *session, op string, err error) error {
	var ne *net.OpError
	if s.dead() || errors.Is(err, amqp.ErrClosed) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: %w", consumer.ErrStaleDelivery, op, err)
	}
	return fmt.Errorf("amqpjobs: %s: %w", op, err)
}
