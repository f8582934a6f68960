package amqpjobs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// confirmGrace is how long Publish still waits for confirms of messages
// already sent after its context is done.
const confirmGrace = 2 * time.Second

// publisher owns the confirm-mode channel of the current session. Many
// goroutines publish on it at once; each waits only for its own confirms.
type publisher struct {
	mu  sync.Mutex
	ch  *pubChannel
	gen uint64
}

// pubChannel is a confirm-mode channel and why it closed.
type pubChannel struct {
	*amqp.Channel
	closed chan *amqp.Error // NotifyClose

	mu     sync.Mutex
	reason *amqp.Error
}

// closeReason returns the error the channel closed with: nil while it is
// open, or when it was closed by the client.
func (c *pubChannel) closeReason() *amqp.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason == nil {
		select {
		case e, ok := <-c.closed:
			if ok {
				c.reason = e
			}
		default:
		}
	}
	return c.reason
}

// channel returns the confirm channel of s, opening one when there is
// none for s or the last one died.
func (p *publisher) channel(s *session) (*pubChannel, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch != nil && p.gen == s.gen && !p.ch.IsClosed() {
		return p.ch, nil
	}
	ch, err := s.pubConn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open publish channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("confirm.select: %w", err)
	}
	p.ch = &pubChannel{Channel: ch, closed: ch.NotifyClose(make(chan *amqp.Error, 1))}
	p.gen = s.gen
	return p.ch, nil
}

func (p *publisher) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch != nil {
		_ = p.ch.Close()
		p.ch = nil
	}
}

// Publish sends jobs to the pipeline's exchange with its routing key (a
// job header x-routing-key overrides it for that job), or, for a job with
// a Delay, to a delay queue that dead-letters it to the exchange when the
// delay has passed. It returns nil after the broker confirmed every
// message. Otherwise a *consumer.BatchError names each job that was not
// confirmed: nacked by the broker (ErrNacked), refused because its
// exchange does not exist, or never sent (ErrEarlierFailed when an
// earlier step failed) are certainly not on the broker; a job sent whose
// confirm was lost (the connection or channel closed, confirm_timeout)
// wraps consumer.ErrInDoubt. While the broker is unreachable Publish waits
// for the reconnect until ctx is done. After Close it returns
// consumer.ErrClosed.
func (d *Driver) Publish(ctx context.Context, jobs []consumer.Job) error {
	d.gate.Lock()
	if d.closeCtx.Err() != nil {
		d.gate.Unlock()
		return consumer.ErrClosed
	}
	d.publishing.Add(1)
	d.gate.Unlock()
	defer func() {
		d.publishing.Add(-1)
		d.poke()
	}()
	if len(jobs) == 0 {
		return nil
	}
	// Close stops a Publish that waits for a reconnect; once connected
	// the batch is sent and its confirms awaited (see publish).
	waitCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(d.closeCtx, func() { cancel(consumer.ErrClosed) })()
	msgs := make([]message, len(jobs))
	for i, j := range jobs {
		pub, key, err := encode(j, d.name, 1, time.Time{}, d.cfg.Key(), nil)
		if err != nil {
			return notSent(len(jobs), i, err)
		}
		msgs[i] = message{exchange: d.cfg.Exchange, key: key, pub: pub}
		if j.Delay > 0 {
			msgs[i].delay = j.Delay
		}
	}
	return d.publish(ctx, waitCtx, msgs)
}

// delayQueue returns the name and arguments of the delay queue that holds
// messages for delay and then dead-letters them to exchange with key.
func delayQueue(delay time.Duration, exchange, key string) (string, amqp.Table) {
	ms := max(delay.Milliseconds(), 1)
	name := fmt.Sprintf("%s%d.%s.%s", delayPrefix, ms, exchange, key)
	if len(name) > 255 {
		sum := sha256.Sum256([]byte(exchange + "\x00" + key))
		name = fmt.Sprintf("%s%d.%x", delayPrefix, ms, sum[:16])
	}
	return name, amqp.Table{
		"x-message-ttl":             ms,
		"x-dead-letter-exchange":    exchange,
		"x-dead-letter-routing-key": key,
		// Long enough that a queue declared just before a publish cannot
		// expire before its messages have moved on.
		"x-expires": 2*ms + int64(time.Minute/time.Millisecond),
	}
}

// notSent is the error of a batch of n jobs of which none was sent
// because job i failed with err.
func notSent(n, i int, err error) *consumer.BatchError {
	be := &consumer.BatchError{Failed: make(map[int]error, n)}
	for j := 0; j < n; j++ {
		be.Failed[j] = fmt.Errorf("%w: job %d: %w", ErrEarlierFailed, i, err)
	}
	be.Failed[i] = err
	return be
}

// publish sends msgs on the confirm channel and waits for every confirm
// (confirm_timeout after the last publish, or ctx and confirmGrace more).
// Messages with a delay go to their delay queue, declared first. waitCtx
// (ctx or a child of it) bounds the wait for a connection. It returns nil
// or a *consumer.BatchError that classifies each unconfirmed message (see
// Publish).
func (d *Driver) publish(ctx, waitCtx context.Context, msgs []message) error {
	s, err := d.waitSession(waitCtx)
	if err != nil {
		return notSent(len(msgs), 0, err)
	}
	// Declare the delay queues this call needs, once each.
	declared := map[string]bool{}
	for i := range msgs {
		m := &msgs[i]
		if m.delay <= 0 {
			continue
		}
		name, args := delayQueue(m.delay, m.exchange, m.key)
		if !declared[name] {
			err := withChannel(s.conn, func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclare(name, true, false, false, false, args)
				return err
			})
			if err != nil {
				return notSent(len(msgs), i, fmt.Errorf("amqpjobs: declare delay queue %q: %w", name, err))
			}
			declared[name] = true
			d.delays.add(name, m.delay, time.Now())
		}
		m.exchange, m.key, m.delay = "", name, 0
	}
	ch, err := d.pub.channel(s)
	if err != nil {
		return notSent(len(msgs), 0, fmt.Errorf("amqpjobs: %w", err))
	}
	be := &consumer.BatchError{Failed: map[int]error{}}
	dcs := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for i, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.exchange, m.key, false, false, m.pub)
		if err != nil {
			// amqp091 returns an error only when the message did not
			// go out whole: the broker never routes it.
			be.Failed[i] = fmt.Errorf("%w: not sent: %w", ErrNotConfirmed, err)
			for j := i + 1; j < len(msgs); j++ {
				be.Failed[j] = fmt.Errorf("%w: job %d was not sent: %w", ErrEarlierFailed, i, err)
			}
			break
		}
		dcs = append(dcs, dc)
	}
	// A message that went out has a fate the caller must learn: its
	// confirm is awaited up to confirm_timeout, and for confirmGrace more
	// once ctx is done; one still unconfirmed then is in doubt.
	timeout := time.NewTimer(d.cfg.ConfirmTimeout)
	defer timeout.Stop()
	ctxDone := ctx.Done()
	var grace <-chan time.Time
	var late error // why the wait ended before every confirm came
	for i, dc := range dcs {
		for late == nil {
			select {
			case <-dc.Done():
			case <-timeout.C:
				late = fmt.Errorf("%w: no confirm within confirm_timeout %s (%w)", ErrNotConfirmed, d.cfg.ConfirmTimeout, consumer.ErrInDoubt)
				continue
			case <-ctxDone:
				ctxDone, grace = nil, time.After(confirmGrace)
				continue
			case <-grace:
				late = fmt.Errorf("%w: %w (%w)", ErrNotConfirmed, context.Cause(ctx), consumer.ErrInDoubt)
				continue
			}
			break
		}
		select {
		case <-dc.Done():
			if err := unconfirmed(dc, ch, msgs[i].exchange); err != nil {
				be.Failed[i] = err
			}
		default:
			be.Failed[i] = late
		}
	}
	if len(be.Failed) > 0 {
		return be
	}
	return nil
}

// unconfirmed classifies the answer to a message sent to exchange on ch:
// nil when the broker acked it; an error wrapping ErrNacked when the broker
// nacked it on an open channel; a failure naming the exchange when the
// broker closed the channel because that exchange does not exist (404);
// else (the channel or connection closed with the confirm outstanding) an
// error wrapping consumer.ErrInDoubt.
func unconfirmed(dc *amqp.DeferredConfirmation, ch *pubChannel, exchange string) error {
	if dc.Acked() {
		return nil
	}
	if !ch.IsClosed() {
		return ErrNacked
	}
	reason := ch.closeReason()
	if reason != nil && reason.Code == amqp.NotFound && strings.Contains(reason.Reason, "no exchange '"+exchange+"'") {
		return fmt.Errorf("%w: exchange %q does not exist (%s)", ErrNotConfirmed, exchange, reason.Reason)
	}
	why := "the publish channel closed"
	if reason != nil {
		why += ": " + reason.Error()
	}
	return fmt.Errorf("%w: %s (%w)", ErrNotConfirmed, why, consumer.ErrInDoubt)
}

// publishOne publishes one message, confirmed; the error is the cause, not
// a BatchError.
func (d *Driver) publishOne(ctx context.Context, m message) error {
	err := d.publish(ctx, ctx, []message{m})
	var be *consumer.BatchError
	if errors.As(err, &be) {
		return be.Failed[0]
	}
	return err
}
