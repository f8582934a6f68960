package amqpjobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// HeaderDeadAt is the header carrying when a job was dead-lettered, Unix
// milliseconds, on a message in the dead_letter queue.
const HeaderDeadAt = "x-dead-at"

var _ consumer.DeadStore = (*Driver)(nil)

// deadDoneKey is the key, in the acked memo, of a dead_letter message
// whose retry copy was confirmed (or that was removed) while its ack may
// not have reached the broker: the next scan acks it instead of showing it.
func deadDoneKey(tok string) string { return "dead:" + tok }

// deadScanRetry is how long a scan waits before trying again while
// another one (of this or another supervisor) holds the dead_letter queue.
const deadScanRetry = 50 * time.Millisecond

// deadScanSettle bounds how long a scan that finds the dead_letter queue
// empty but consumed waits for it: a scan that just ended hands its
// messages back to the queue a moment after its channel closed.
const deadScanSettle = 2 * time.Second

// errDeadHeld: the dead_letter queue shows no ready message while a
// consumer holds it (see deadScanSettle).
var errDeadHeld = errors.New("amqpjobs: dead_letter queue held by a consumer")

// deadScan holds the messages of the dead_letter queue, unacked, on a
// channel of its own with an exclusive consumer, so scans of the same
// queue take turns (across supervisors too) and nothing is lost: closing
// the channel returns every message not acked to its place in the queue.
type deadScan struct {
	ch   *amqp.Channel
	held []amqp.Delivery // in queue order, done ones left out
}

// close returns every held message that was not acked to the queue.
func (sc *deadScan) close() {
	if sc.ch != nil {
		_ = sc.ch.Close()
	}
}

// openDeadScan holds the messages the dead_letter queue has when it
// starts (at most limit shown when limit > 0; every one when 0). Messages
// whose retry or removal was done but whose ack may have been lost are
// acked on the way and not held.
func (d *Driver) openDeadScan(ctx context.Context, limit int) (*deadScan, error) {
	if d.deadLetter == "" {
		return nil, fmt.Errorf("amqpjobs: pipeline %q: %w", d.name, consumer.ErrNoDeadStore)
	}
	settleBy := time.Now().Add(deadScanSettle)
	for {
		s, err := d.waitSession(ctx)
		if err != nil {
			return nil, err
		}
		if err := d.declareDeadLetter(s); err != nil {
			return nil, fmt.Errorf("amqpjobs: dead_letter queue %q: %w", d.deadLetter, err)
		}
		sc, err := d.scanOnce(ctx, s, limit, time.Now().Before(settleBy))
		var ae *amqp.Error
		if err == nil || (!errors.Is(err, errDeadHeld) && (!errors.As(err, &ae) || ae.Code != amqp.AccessRefused)) {
			return sc, err
		}
		// Another scan holds the queue (exclusive consumer): wait for it.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("amqpjobs: dead_letter queue %q in use by another scan: %w", d.deadLetter, ctx.Err())
		case <-time.After(deadScanRetry):
		}
	}
}

// scanOnce is one attempt of openDeadScan on session s. With waitHeld, a
// queue with no ready message and a consumer is errDeadHeld (the messages
// of a scan that just ended may not be back yet); without, it is empty.
func (d *Driver) scanOnce(ctx context.Context, s *session, limit int, waitHeld bool) (*deadScan, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, err
	}
	sc := &deadScan{ch: ch}
	ok := false
	defer func() {
		if !ok {
			sc.close()
		}
	}()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	q, err := ch.QueueDeclarePassive(d.deadLetter, false, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	n := q.Messages
	if n == 0 && q.Consumers > 0 && waitHeld {
		return nil, errDeadHeld
	}
	if n == 0 {
		ok = true
		return sc, nil
	}
	// Only the messages there now are read: the first n of the queue.
	qos := n
	if limit > 0 && limit < qos {
		qos = limit
	}
	if qos > math.MaxUint16 {
		qos = 0 // unlimited
	}
	if err := ch.Qos(qos, 0, false); err != nil {
		return nil, err
	}
	tag := "pipevisor-dead-" + uuid.NewString()
	msgs, err := ch.ConsumeWithContext(ctx, d.deadLetter, tag, false, true, false, false, nil)
	if err != nil {
		return nil, err
	}
	for seen := 0; seen < n && (limit <= 0 || len(sc.held) < limit); {
		select {
		case m, open := <-msgs:
			if !open {
				return nil, fmt.Errorf("amqpjobs: reading dead_letter queue %q: %w", d.deadLetter, closeErr(closed))
			}
			seen++
			if tok, _ := m.Headers[hdrMsg].(string); tok != "" {
				if _, done := d.acked.take(deadDoneKey(tok)); done {
					if err := m.Ack(false); err != nil {
						return nil, err
					}
					continue
				}
			}
			sc.held = append(sc.held, m)
		case <-ctx.Done():
			return nil, fmt.Errorf("amqpjobs: reading dead_letter queue %q: %w", d.deadLetter, ctx.Err())
		}
	}
	ok = true
	return sc, nil
}

// closeErr returns why a channel closed, or amqp.ErrClosed.
func closeErr(closed <-chan *amqp.Error) error {
	select {
	case e := <-closed:
		if e != nil {
			return e
		}
	default:
	}
	return amqp.ErrClosed
}

// deadJob reads a message of the dead_letter queue as a dead job.
func (d *Driver) deadJob(m *amqp.Delivery) consumer.DeadJob {
	dec := decode(m, d.cfg.JobHeader, d.cfg.Priority, uuid.NewString)
	headers := maps.Clone(dec.headers)
	if headers == nil {
		headers = map[string][]string{}
	}
	maps.DeleteFunc(headers, func(k string, _ []string) bool { return deadHeader(k) || brokerHeader(k) })
	out := consumer.DeadJob{
		Job: consumer.Job{
			ID:       dec.id,
			Name:     dec.job,
			Pipeline: d.name,
			Payload:  m.Body,
			Headers:  headers,
			Priority: dec.priority,
			Key:      dec.key,
		},
		Attempts: dec.attempt,
	}
	out.Reason = stringify(m.Headers[HeaderDeadReason])
	if ms, ok := toInt(m.Headers[HeaderDeadAt]); ok && ms > 0 {
		out.At = time.UnixMilli(ms)
	}
	return out
}

// deadHeader reports whether a header is the driver's record of a dead
// letter, left out of a dead job's headers and of its retried copy.
func deadHeader(k string) bool {
	return k == HeaderDeadReason || k == HeaderDeadQueue || k == HeaderDeadAt ||
		k == HeaderOriginalExpiration || strings.HasPrefix(k, "x-dead-")
}

// ListDead returns the messages of the pipeline's dead_letter queue,
// oldest first, at most limit when limit > 0. It reads them with an
// exclusive consumer and never acks one (only those whose retry or
// removal was already done): they all stay in the queue, in their order.
// Without a dead_letter queue it returns consumer.ErrNoDeadStore.
func (d *Driver) ListDead(ctx context.Context, limit int) ([]consumer.DeadJob, error) {
	sc, err := d.openDeadScan(ctx, limit)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	out := make([]consumer.DeadJob, len(sc.held))
	for i := range sc.held {
		out[i] = d.deadJob(&sc.held[i])
	}
	return out, nil
}

// RetryDead publishes the selected jobs of the dead_letter queue to the
// pipeline as new jobs (attempt 1, their ids, headers, priorities and
// keys; the dead-letter headers left out), confirmed, and acks each
// dead_letter message only once its copy was confirmed. A copy in doubt
// leaves its message in the queue.
func (d *Driver) RetryDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	return d.retryDead(ctx, sel, nil)
}

// deadRetryChunk is how many copies RetryDead publishes before it acks
// their originals: a connection lost mid-retry leaves at most this many
// copies in doubt (they stay in the dead_letter queue as well).
const deadRetryChunk = 50

// retryDead is RetryDead; afterCopy, when not nil, runs between the
// confirms of each chunk of copies and the acks of their originals
// (tests cut the connection there).
func (d *Driver) retryDead(ctx context.Context, sel consumer.DeadSelection, afterCopy func()) ([]string, error) {
	sc, err := d.openDeadScan(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	var picked []*amqp.Delivery
	var jobs []consumer.Job
	for i := range sc.held {
		m := &sc.held[i]
		dj := d.deadJob(m)
		if sel.Has(dj.Job.ID) {
			picked = append(picked, m)
			jobs = append(jobs, dj.Job)
		}
	}
	var ids []string
	var errs []error
	for lo := 0; lo < len(jobs) && ctx.Err() == nil; lo += deadRetryChunk {
		hi := min(lo+deadRetryChunk, len(jobs))
		pubErr := d.Publish(ctx, jobs[lo:hi])
		failed := map[int]error{}
		var be *consumer.BatchError
		switch {
		case errors.As(pubErr, &be):
			failed = be.Failed
		case pubErr != nil:
			for i := range hi - lo {
				failed[i] = pubErr
			}
		}
		for i, m := range picked[lo:hi] {
			if failed[i] == nil {
				d.markDeadDone(m)
			}
		}
		if afterCopy != nil {
			afterCopy()
		}
		for i, m := range picked[lo:hi] {
			if failed[i] != nil {
				continue
			}
			ids = append(ids, jobs[lo+i].ID)
			// When the ack is lost the copy still counts: the next scan
			// acks the message (markDeadDone).
			_ = m.Ack(false)
		}
		if pubErr != nil {
			errs = append(errs, pubErr)
		}
	}
	if len(ids) < len(jobs) {
		return ids, fmt.Errorf("amqpjobs: retry failed jobs of %q: %d of %d not confirmed (still in %q): %w",
			d.name, len(jobs)-len(ids), len(jobs), d.deadLetter, errors.Join(append(errs, ctx.Err())...))
	}
	return ids, nil
}

// markDeadDone remembers that the dead_letter message m is done with, so
// that a scan after its ack was lost acks it instead of showing it.
func (d *Driver) markDeadDone(m *amqp.Delivery) {
	if tok, _ := m.Headers[hdrMsg].(string); tok != "" {
		d.acked.put(deadDoneKey(tok), 0)
	}
}

// RemoveDead acks (deletes) the selected messages of the dead_letter
// queue and returns their job ids.
func (d *Driver) RemoveDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	sc, err := d.openDeadScan(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	var ids []string
	for i := range sc.held {
		m := &sc.held[i]
		id := d.deadJob(m).Job.ID
		if !sel.Has(id) {
			continue
		}
		d.markDeadDone(m)
		if err := m.Ack(false); err != nil {
			return ids, fmt.Errorf("amqpjobs: remove failed job %q from %q: %w", id, d.deadLetter, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
