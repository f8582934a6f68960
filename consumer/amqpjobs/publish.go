package amqpjobs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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
	ch  *amqp.Channel
	gen uint64
}

// channel returns the confirm channel of s, opening one when there is
// none for s or the last one died.
func (p *publisher) channel(s *session) (*amqp.Channel, error) {
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
	p.ch, p.gen = ch, s.gen
	return ch, nil
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
// delay has passed. It returns after the broker confirmed every message;
// on failure a *consumer.BatchError names the failed jobs, and every job
// after the first failed one counts as failed (ErrEarlierFailed). While
// the broker is unreachable Publish waits for the reconnect until ctx is
// done. After Close it returns consumer.ErrClosed.
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
	fail := func(i int, err error) error {
		be := &consumer.BatchError{Failed: map[int]error{}}
		for j := i; j < len(jobs); j++ {
			be.Failed[j] = err
		}
		return be
	}
	for i, j := range jobs {
		pub, key, err := encode(j, d.name, 1, d.cfg.Key(), nil)
		if err != nil {
			return fail(i, err)
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
	name := fmt.Sprintf("pipevisor.delay.%d.%s.%s", ms, exchange, key)
	if len(name) > 255 {
		sum := sha256.Sum256([]byte(exchange + "\x00" + key))
		name = fmt.Sprintf("pipevisor.delay.%d.%x", ms, sum[:16])
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

// publish sends msgs on the confirm channel and waits for every confirm
// (confirm_timeout after the last publish, or ctx). Messages with a delay
// go to their delay queue, declared first. waitCtx (ctx or a child of it)
// bounds the wait for a connection. It returns nil or a
// *consumer.BatchError.
func (d *Driver) publish(ctx, waitCtx context.Context, msgs []message) error {
	be := &consumer.BatchError{Failed: map[int]error{}}
	failFrom := func(i int, err error) error {
		for j := i; j < len(msgs); j++ {
			if _, ok := be.Failed[j]; !ok {
				if j == i {
					be.Failed[j] = err
				} else {
					be.Failed[j] = fmt.Errorf("%w: %w", ErrEarlierFailed, err)
				}
			}
		}
		return be
	}
	s, err := d.waitSession(waitCtx)
	if err != nil {
		return failFrom(0, err)
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
				return failFrom(i, fmt.Errorf("amqpjobs: declare delay queue %q: %w", name, err))
			}
			declared[name] = true
			d.delays.add(name, m.delay, time.Now())
		}
		m.exchange, m.key, m.delay = "", name, 0
	}
	ch, err := d.pub.channel(s)
	if err != nil {
		return failFrom(0, fmt.Errorf("amqpjobs: %w", err))
	}
	dcs := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	var sendErr error
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.exchange, m.key, false, false, m.pub)
		if err != nil {
			sendErr = fmt.Errorf("%w: %w", ErrNotConfirmed, err)
			break
		}
		dcs = append(dcs, dc)
	}
	// A message that went out has a fate the caller must learn: its
	// confirm is awaited up to confirm_timeout, and for confirmGrace more
	// once ctx is done (reporting a published job as failed invites a
	// duplicate push).
	timeout := time.NewTimer(d.cfg.ConfirmTimeout)
	defer timeout.Stop()
	ctxDone := ctx.Done()
	var grace <-chan time.Time
	for i, dc := range dcs {
	wait:
		for {
			select {
			case <-dc.Done():
				break wait
			case <-timeout.C:
				return failFrom(i, fmt.Errorf("%w: no confirm within confirm_timeout %s", ErrNotConfirmed, d.cfg.ConfirmTimeout))
			case <-ctxDone:
				ctxDone, grace = nil, time.After(confirmGrace)
			case <-grace:
				return failFrom(i, fmt.Errorf("%w: %w", ErrNotConfirmed, context.Cause(ctx)))
			}
		}
		if !dc.Acked() {
			if ch.IsClosed() {
				return failFrom(i, fmt.Errorf("%w: the publish channel closed (unknown exchange %q?)", ErrNotConfirmed, msgs[i].exchange))
			}
			return failFrom(i, ErrNacked)
		}
	}
	if sendErr != nil {
		return failFrom(len(dcs), sendErr)
	}
	return nil
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
