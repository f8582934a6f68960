// Package amqpjobs is the RabbitMQ driver (driver: amqp): it publishes jobs
// with publisher confirms and consumes them with manual acks through
// github.com/rabbitmq/amqp091-go.
//
// What it promises, beyond RoadRunner's amqp driver:
//
//   - Every publish is confirmed: Push, PushBatch, delayed jobs, retried
//     copies and dead-lettered copies. Publish returns only after the
//     broker confirmed every message of the call, and fails when one is
//     nacked, its channel dies or the confirm takes longer than
//     confirm_timeout. Confirms of a batch are awaited together.
//   - Retry(0) is basic.nack(requeue=true): on a classic queue RabbitMQ
//     puts the message back at its original position (RoadRunner #1941).
//     Quorum queues (RabbitMQ 3.10) put it at the tail.
//   - Retries with a delay and requeues with new headers publish a copy
//     (with x-attempt = attempt+1) to a delay queue that dead-letters back
//     to the work queue, or straight to the work queue; the original is
//     acked only after the copy is confirmed.
//   - A lost connection or channel is redialled with backoff forever;
//     Check reports the outage meanwhile. Deliveries of the dead channel
//     are never acked on the new one: Settle returns
//     consumer.ErrStaleDelivery and RabbitMQ redelivers them.
//   - Prefetch: basic.qos is the pipeline's prefetch (default 10), not
//     its free slots, so up to prefetch deliveries wait on this side
//     ahead of the slots, as under RoadRunner, and a slot that frees
//     takes the next one without a broker round trip. A delivery is
//     handed out only to a waiting Receive, or to ReceiveReady when it is
//     already on this side and no Receive waits; until then it is not
//     counted as running (Stat, Close) and never charged an attempt:
//     Pause, Close and a requeue in place (which must not be overtaken)
//     hand the waiting ones back with basic.nack(requeue=true), keeping
//     their queue positions and attempts; those of a channel that died
//     are never handed out (RabbitMQ redelivers them, with the attempt
//     they had). Across a restart of the supervisor the attempt is not
//     remembered: RabbitMQ marks them redelivered, which counts one.
//   - Acks are held for up to 2ms (or a quarter of the prefetch) and
//     written together, with multiple=true below the oldest unsettled
//     delivery: one write instead of one per job (an ack above a job
//     still running waits up to 2ms more, 4ms in all, for a multiple ack
//     that covers it). A job acked on a channel that died before the
//     write is recognised on redelivery and not run again; only a
//     supervisor killed (SIGKILL) within those milliseconds runs such a
//     job again.
//   - Publishes go over a connection of their own, so a broker that blocks
//     publishers (memory or disk alarm) does not stall acks.
//
// Message layout written by Publish: headers rr_id, rr_job, rr_pipeline,
// rr_headers (JSON of the user headers), rr_priority, rr_delay,
// rr_auto_ack, pv_msg (a UUID and when the job is due), rr_key for a job
// key, x-attempt on copies past the first attempt (none means 1);
// persistent delivery mode, MessageId = job id. Messages without rr_id (third-party producers)
// are consumed with the MessageId or a generated UUID as id, the job name
// from the job_header header or else the routing key, and every table
// entry as a header.
package amqpjobs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// DriverName is the value of consumer.Delivery.Driver and Stat.Driver.
const DriverName = "amqp"

// Sentinel errors of the amqp driver.
var (
	// ErrInvalidConfig wraps Config or Global validation errors from New.
	ErrInvalidConfig = errors.New("amqpjobs: invalid configuration")
	// ErrUnreachable wraps the failed first connection of New.
	ErrUnreachable = errors.New("amqpjobs: broker unreachable")
	// ErrDisconnected is returned by Check and Stat while the driver is
	// redialling.
	ErrDisconnected = errors.New("amqpjobs: disconnected from the broker")
	// ErrNotConsuming is returned by Receive on a pipeline without queue.
	ErrNotConsuming = errors.New("amqpjobs: pipeline has no queue to consume")
	// ErrNacked is returned for a publish the broker nacked.
	ErrNacked = errors.New("amqpjobs: broker nacked the publish")
	// ErrNotConfirmed is wrapped by the error of a publish the broker did
	// not confirm; it wraps consumer.ErrInDoubt too when the message was
	// sent and its confirm was lost (timeout, cancelled context, or the
	// channel or connection died).
	ErrNotConfirmed = errors.New("amqpjobs: publish not confirmed")
	// ErrEarlierFailed marks the jobs of a batch that were never sent
	// because an earlier step of the batch failed (encoding a job,
	// declaring a delay queue, sending a message).
	ErrEarlierFailed = errors.New("amqpjobs: an earlier job of the batch failed")
)

// attemptMemoSize bounds the in-memory map that carries the attempt of a
// message across basic.nack(requeue=true).
const attemptMemoSize = 10000

// Driver is one amqp pipeline. It implements consumer.Consumer,
// consumer.Publisher, consumer.Stater, consumer.Checker, consumer.Pauser
// and consumer.ReadyReceiver.
// All methods are safe for concurrent use.
type Driver struct {
	name       string
	g          Global
	cfg        Config
	deadLetter string
	log        *slog.Logger
	tls        *tls.Config
	tag        string // consumer tag
	// user is the user the driver logs in as: the only user_id the
	// broker lets it publish (see copyOf).
	user string

	closeCtx context.Context // done when Close starts
	closing  <-chan struct{} // closeCtx.Done()
	finished chan struct{}   // closed when Close is done

	gate       sync.Mutex // orders Publish's start against Close's
	startClose context.CancelFunc
	publishing atomic.Int64 // Publish calls in flight

	mu      sync.Mutex
	sess    *session      // live session, nil while disconnected
	ready   chan struct{} // closed while sess != nil
	lastErr error

	feedMu      sync.Mutex
	feed        *feed         // what Receive reads; nil while not consuming
	feedChanged chan struct{} // closed when feed is replaced

	consumeMu sync.Mutex // serialises Pause, Resume, Close and install
	paused    bool
	stopping  bool

	pub      publisher
	attempts *attemptMemo
	// acked maps the pv_msg of recent acks to the session generation
	// they were sent on (see hdrMsg).
	acked  *attemptMemo
	dlqGen atomic.Uint64 // session generation the dead_letter queue was declared in

	ackKick     chan struct{} // cap 1: a session started holding acks (flushLoop)
	ackDelay    time.Duration // longest an ack is held (ackbatch.go)
	outstanding atomic.Int64  // taken from a feed, not settled
	settledSig  chan struct{} // cap 1, poked on every settlement
	delays      delayQueues   // delay queues published to, for Stat

	cancel context.CancelFunc // stops supervise
	wg     sync.WaitGroup     // supervise and the drains of stopConsuming

	closeOnce sync.Once
	closeErr  error
}

var (
	_ consumer.Consumer  = (*Driver)(nil)
	_ consumer.Publisher = (*Driver)(nil)
	_ consumer.Stater    = (*Driver)(nil)
	_ consumer.Checker   = (*Driver)(nil)
	_ consumer.Pauser    = (*Driver)(nil)
)

// inbound is one delivery taken from a feed and the session it came on.
type inbound struct {
	s *session
	m amqp.Delivery
}

// New connects to the broker of g and returns the driver of pipeline name.
// It applies the defaults to copies of g and cfg and validates them,
// connects, declares the exchange, queue and binding (unless
// cfg.Declare is false) and, when cfg has a queue, starts consuming.
// deadLetter is the queue Dead outcomes are published to (declared
// durable); empty means the queue's x-dead-letter-exchange, else discard.
// log may be nil. ctx bounds only the first connection; later reconnects
// run in the background until Close.
func New(ctx context.Context, name string, g Global, cfg Config, deadLetter string, log *slog.Logger) (*Driver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g.Defaults()
	cfg.Defaults()
	if err := errors.Join(g.Validate(), cfg.Validate()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	tc, err := tlsConfig(g)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	uri, err := amqp.ParseURI(g.Addr)
	if err != nil {
		// ParseURI's error may quote the address, password included.
		return nil, fmt.Errorf("%w: addr %q is not a valid AMQP URI", ErrInvalidConfig, redact(g.Addr))
	}
	tag := cfg.ConsumerID
	if tag == "" {
		tag = "pipevisor-" + name + "-" + uuid.NewString()[:8]
	}
	d := &Driver{
		name:        name,
		g:           g,
		cfg:         cfg,
		deadLetter:  deadLetter,
		log:         log,
		tls:         tc,
		tag:         tag,
		user:        uri.Username,
		feedChanged: make(chan struct{}),
		finished:    make(chan struct{}),
		ready:       make(chan struct{}),
		attempts:    newAttemptMemo(attemptMemoSize),
		acked:       newAttemptMemo(attemptMemoSize),
		settledSig:  make(chan struct{}, 1),
		ackKick:     make(chan struct{}, 1),
		ackDelay:    ackDelay,
	}
	d.closeCtx, d.startClose = context.WithCancel(context.Background())
	d.closing = d.closeCtx.Done()
	s, err := d.connect(ctx, 1)
	if err != nil {
		d.startClose()
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if err := d.install(s); err != nil {
		d.startClose()
		s.kill()
		d.wg.Wait()
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Go(func() { d.supervise(sctx, s) })
	d.wg.Go(func() { d.flushLoop(sctx, d.ackKick) })
	return d, nil
}

// deliver wraps in as a Delivery, or returns nil when it must not be
// handed out (an auto-ack message whose ack failed).
func (d *Driver) deliver(in inbound) *consumer.Delivery {
	st := &settlement{d: d, in: in}
	m := &st.in.m
	if tok, ok := m.Headers[hdrMsg].(string); ok && m.Redelivered {
		if gen, ok := d.acked.take(tok); ok && uint64(gen) < in.s.gen {
			// Acked before the connection died, but the broker never
			// got the ack: the job is done, settle the copy quietly.
			err := d.ack(&st.in, false)
			d.settledOne()
			if err != nil {
				d.log.Warn("ack of a redelivered duplicate failed", "err", err)
			}
			return nil
		}
	}
	st.dec = decode(m, d.cfg.JobHeader, d.cfg.Priority, uuid.NewString)
	dec := &st.dec
	del := &st.del
	del.ID = dec.id
	del.Job = dec.job
	del.Pipeline = d.name
	del.Driver = DriverName
	del.Queue = d.cfg.Queue
	del.Headers = dec.headers
	del.Body = m.Body
	del.Attempt = d.attemptFor(m, st.dec)
	del.Key = dec.key
	del.Priority = dec.priority
	del.Enqueued = enqueued(m)
	if dec.autoAck {
		err := d.ack(&st.in, false)
		d.settledOne()
		if err != nil {
			d.log.Warn("auto-ack failed; the broker redelivers the job", "id", dec.id, "err", err)
			return nil
		}
		del.SetSettle(func(context.Context, consumer.Outcome) error { return nil })
		return del
	}
	del.SetSettle(st.settle)
	return del
}

// attemptFor returns the attempt number of a delivery: the one remembered
// for a message the driver put back itself, else x-attempt (1 when absent)
// plus the quorum x-delivery-count, else x-attempt+1 for a redelivery.
func (d *Driver) attemptFor(m *amqp.Delivery, dec decoded) int {
	if a, ok := d.attempts.take(dec.id); ok && m.Redelivered {
		return a
	}
	switch {
	case dec.hasCount:
		return dec.attempt + dec.deliveryCount
	case m.Redelivered:
		return dec.attempt + 1
	}
	return dec.attempt
}

// giveBack returns a delivery that was never handed out to the queue
// (basic.nack with requeue; on a dead session the broker has taken it
// back already), remembering its attempt so the redelivery does not
// count as one.
func (d *Driver) giveBack(s *session, m *amqp.Delivery) {
	dec := decode(m, d.cfg.JobHeader, d.cfg.Priority, func() string { return "" })
	if !dec.thirdParty || m.MessageId != "" {
		d.attempts.put(dec.id, d.attemptFor(m, dec))
	}
	if s.dead() {
		s.untrack(m.DeliveryTag)
		return
	}
	_ = s.nack(m.DeliveryTag, true)
}

// handOut counts a delivery taken from a feed.
func (d *Driver) handOut() { d.outstanding.Add(1) }

// settledOne uncounts a delivery and wakes Close.
func (d *Driver) settledOne() {
	d.outstanding.Add(-1)
	d.poke()
}

// poke wakes Close waiting for settlements and publishes.
func (d *Driver) poke() {
	select {
	case d.settledSig <- struct{}{}:
	default:
	}
}

// Pause cancels the AMQP consumer: deliveries not handed out yet go back
// to the queue (basic.nack with requeue, keeping their position on a
// classic queue). Handed-out deliveries can still be settled. Pause is
// idempotent; the pause survives reconnects.
func (d *Driver) Pause(ctx context.Context) error {
	d.consumeMu.Lock()
	defer d.consumeMu.Unlock()
	if d.stopping {
		return consumer.ErrClosed
	}
	d.paused = true
	if s := d.current(); s != nil {
		return d.stopConsuming(ctx, s)
	}
	return nil
}

// Resume starts the AMQP consumer again after Pause (idempotent). While
// disconnected it only clears the pause; consuming starts on reconnect.
func (d *Driver) Resume(context.Context) error {
	d.consumeMu.Lock()
	defer d.consumeMu.Unlock()
	if d.stopping {
		return consumer.ErrClosed
	}
	d.paused = false
	if s := d.current(); s != nil {
		return d.startConsuming(s)
	}
	return nil
}

// Check returns nil while connected (consuming or paused), an error
// wrapping ErrDisconnected while redialling, and consumer.ErrClosed after
// Close.
func (d *Driver) Check() error {
	select {
	case <-d.finished:
		return consumer.ErrClosed
	default:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess != nil && !d.sess.dead() {
		return nil
	}
	if d.lastErr != nil {
		return fmt.Errorf("%w: %w", ErrDisconnected, d.lastErr)
	}
	return ErrDisconnected
}

// queueDepth returns the ready message count of queue (passive declare)
// over the session's stat channel, opened on first use and kept, so that
// a Stat poll costs one round trip and not a channel open and close too.
// A failed declare closes that channel; the next call opens another.
func (s *session) queueDepth(queue string) (int, error) {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	if s.statCh == nil || s.statCh.IsClosed() {
		ch, err := s.conn.Channel()
		if err != nil {
			return 0, fmt.Errorf("amqpjobs: open stat channel: %w", err)
		}
		s.statCh = ch
	}
	q, err := s.statCh.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		_ = s.statCh.Close()
		s.statCh = nil
		return 0, fmt.Errorf("amqpjobs: passive declare %q: %w", queue, err)
	}
	return q.Messages, nil
}

// Close stops consuming: it cancels the consumer, returns deliveries that
// were not handed out (basic.nack with requeue), waits until every
// handed-out delivery is settled and every Publish in flight has its
// confirms (a Publish still waiting for a reconnect gives up with
// consumer.ErrClosed), or until ctx is done, deletes the queue when
// delete_queue_on_stop is set, and closes the channels and the connection.
// Unsettled deliveries go back to the queue when the channel closes.
// Receive and Publish return consumer.ErrClosed once Close has started;
// Settle works until Close returns. Close is idempotent; it returns ctx's
// error when settlements were still outstanding.
func (d *Driver) Close(ctx context.Context) error {
	d.closeOnce.Do(func() { d.closeErr = d.close(ctx) })
	return d.closeErr
}

func (d *Driver) close(ctx context.Context) error {
	d.gate.Lock()
	d.startClose()
	d.gate.Unlock()
	var errs []error
	d.consumeMu.Lock()
	d.stopping = true
	if s := d.current(); s != nil {
		if err := d.stopConsuming(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	d.consumeMu.Unlock()

	for d.outstanding.Load() > 0 || d.publishing.Load() > 0 {
		select {
		case <-d.settledSig:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("amqpjobs: %d deliveries unsettled, %d publishes unconfirmed at close: %w",
				d.outstanding.Load(), d.publishing.Load(), ctx.Err()))
		}
		if ctx.Err() != nil {
			break
		}
	}

	s := d.current()
	if s != nil {
		if err := s.flushAcks(); err != nil {
			errs = append(errs, staleOr(s, "basic.ack", err))
		}
	}
	d.cancel()
	if s != nil && d.cfg.DeleteQueueOnStop && d.cfg.Queue != "" {
		err := withChannel(s.conn, func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(d.cfg.Queue, false, false, false)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("amqpjobs: delete queue %q: %w", d.cfg.Queue, err))
		}
	}
	close(d.finished)
	d.pub.close()
	if s != nil {
		s.kill()
	}
	d.wg.Wait()
	d.mu.Lock()
	if d.sess != nil {
		d.sess.kill()
	}
	d.mu.Unlock()
	return errors.Join(errs...)
}

// isFinished reports whether Close has returned (or is past waiting).
func (d *Driver) isFinished() bool {
	select {
	case <-d.finished:
		return true
	default:
		return false
	}
}

// attemptMemo remembers the attempt number a message should have on its
// next delivery after basic.nack(requeue=true), which keeps the headers
// as they were, and the session generation of recent acks. It holds at
// most size ids, forgetting the oldest.
//
// A put runs once per ack, a take only for a redelivered message (or a
// requeued one), so put only writes the id into a ring of the last size
// puts; the map from id to its newest put is brought up to date by the
// next take (index), over the puts since the last one, or rebuilt from
// the ring when more than size came in between. A map entry whose ring
// slot has been overwritten since is an id forgotten by the bound.
type attemptMemo struct {
	mu      sync.Mutex
	m       map[string]uint64 // id -> seq of its newest put, as of indexed
	ring    []memoSlot        // slot seq%size holds put seq
	puts    uint64            // puts so far; the next put's seq
	indexed uint64            // puts reflected in m
	size    int
}

// memoSlot is one put: the id, its value and its seq. A slot taken out
// has an empty id.
type memoSlot struct {
	id  string
	v   int
	seq uint64
}

func newAttemptMemo(size int) *attemptMemo {
	return &attemptMemo{m: map[string]uint64{}, size: max(size, 1)}
}

func (a *attemptMemo) put(id string, v int) {
	a.mu.Lock()
	slot := memoSlot{id: id, v: v, seq: a.puts}
	if len(a.ring) < a.size {
		a.ring = append(a.ring, slot)
	} else {
		a.ring[a.puts%uint64(a.size)] = slot
	}
	a.puts++
	a.mu.Unlock()
}

// index brings m up to date with the ring. The caller holds a.mu.
func (a *attemptMemo) index() {
	if a.indexed == a.puts {
		return
	}
	from := a.indexed
	if a.puts-a.indexed > uint64(a.size) || len(a.m) > 2*a.size {
		// Every entry of m is stale or about to be replaced, or stale
		// entries piled up: start over from the ring.
		clear(a.m)
		from = a.puts - uint64(len(a.ring))
	}
	for seq := from; seq < a.puts; seq++ {
		if s := &a.ring[seq%uint64(a.size)]; s.id != "" {
			a.m[s.id] = seq
		}
	}
	a.indexed = a.puts
}

func (a *attemptMemo) take(id string) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.puts == 0 {
		return 0, false
	}
	a.index()
	seq, ok := a.m[id]
	if !ok {
		return 0, false
	}
	delete(a.m, id)
	s := &a.ring[seq%uint64(a.size)]
	if s.seq != seq || s.id != id {
		return 0, false // overwritten since: forgotten
	}
	s.id = ""
	return s.v, true
}
