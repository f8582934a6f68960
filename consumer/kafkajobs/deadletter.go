package kafkajobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

// Dead records and their dead-letter copies.
//
// A delivery settled Dead is produced to the dead-letter topic and then
// marked done. When that produce fails, the record is dead all the same:
// it is never handed out again. It stays in its partition as stateDead
// ("dead, copy pending") with the copy it had built, and the dead-letter
// retrier (deadLetterLoop, one per driver, owned by Close) produces that
// same copy again after copyRetryDelay, doubling up to maxCopyRetryDelay,
// until it lands; then the record is done and may be committed. Until
// then:
//   - the commit point stays before it, so a restart, Close or rebalance
//     leaves it uncommitted and the partition's next owner runs the job
//     again (as for every record not settled for good);
//   - its partition (ordering: partition) or key (ordering: key) waits, as
//     for a record waiting for an in-place retry: no later record of it is
//     handed out, so none is processed, let alone committed, past it;
//   - it counts neither as active (it is settled) nor as ready or delayed
//     in Stat (it will not run again).
//
// An attempt whose wait ends (the settle context, or the producer's
// delivery timeout for a retry, plus onWireGrace) before kgo reported its
// outcome may still land: kgo keeps a record it may have sent until the
// broker answers. Such a copy stays in flight and is not produced again
// until its own promise reports the outcome, through
// producer.produceThen: success makes the record done as for a copy that
// landed in time, a failure has it retried as above. The outcome comes:
// kgo fails a record past producer_options.delivery_timeout (the
// client's record delivery timeout) as soon as it safely may, a record it
// sent once the broker answered its request, and every record at Close.
// Meanwhile the record is held as above (a Settle that ran out of time
// says the copy is pending). A copy is thus never produced twice by one
// owner of its partition.
//
// A partition being revoked gets no new copy attempts; the revocation
// waits for an attempt in flight (whose outcome may be unknown) as it
// waits for a running job, and a copy still pending when the partition is
// dropped is dropped with it: the next owner runs the job again, and
// writes a second copy if the first one still landed. Outcomes reported
// after the partition was dropped, or after Close, are ignored.

// maxCopyRetryDelay caps the wait between two attempts at a dead-letter
// copy (see copyRetryDelay).
const maxCopyRetryDelay = 5 * time.Second

// deadCopy is the pending dead-letter copy of a record in stateDead.
// Its fields are guarded by consumerState.mu.
type deadCopy struct {
	rec  *kgo.Record   // the copy as first built; each attempt produces a fresh record of it
	at   time.Time     // next attempt not before
	wait time.Duration // the wait before the next attempt after a failure
	// inFlight: an attempt is being produced, or its wait ended before
	// kgo reported its outcome; no other attempt starts until it has.
	inFlight bool
	// answered and answerErr keep the outcome of Settle's own attempt
	// when kgo reports it late but before the record was held as dead.
	answered  bool
	answerErr error
}

// settleDead carries out a Dead outcome for the handed-out entry e of ps:
// with a dead-letter topic it produces the dead-letter copy (the user
// headers and attempt the delivery had, the reason and the source
// topic, partition and offset) and marks e done. When the copy cannot be
// produced, or ctx ends before the broker answered, e becomes a dead
// record whose copy is retried, or awaited, by the driver (see the
// comment at the top of this file) and the error is returned: the job
// does not run again. Without a dead-letter topic the job is logged and
// dropped.
func (d *Driver) settleDead(ctx context.Context, ps *partState, e *entry, o consumer.Outcome, headers map[string][]string, attempt int) error {
	if d.deadLetter == "" {
		d.log.Warn("dead job dropped: the pipeline has no dead_letter topic",
			"id", e.meta.id, "job", e.meta.job, "topic", e.rec.Topic,
			"partition", e.rec.Partition, "offset", e.rec.Offset, "reason", o.Reason)
		return d.finish(ps, e)
	}
	rec := copyRecord(d.deadLetter, e, headers, attempt, time.Time{},
		kgo.RecordHeader{Key: hdrDeadReason, Value: []byte(consumer.TruncateReason(o.Reason))},
		kgo.RecordHeader{Key: hdrSourceTopic, Value: []byte(e.rec.Topic)},
		kgo.RecordHeader{Key: hdrSourcePartition, Value: fmt.Appendf(nil, "%d", e.rec.Partition)},
		kgo.RecordHeader{Key: hdrSourceOffset, Value: fmt.Appendf(nil, "%d", e.rec.Offset)},
	)
	dc := &deadCopy{rec: rec, wait: copyRetryDelay, inFlight: true}
	err := d.prod.produceThen(ctx, []*kgo.Record{freshCopy(rec)}, func(_ int, err error) {
		d.copyAnswered(ps, e, dc, err)
	})[0]
	if err == nil {
		return d.finish(ps, e)
	}
	unanswered := errors.Is(err, errUnanswered)
	landed, herr := d.holdDead(ps, e, dc, unanswered)
	switch {
	case herr != nil:
		return fmt.Errorf("kafkajobs: dead-letter copy to %q: %w; %w", d.deadLetter, err, herr)
	case landed:
		return nil
	case unanswered:
		return fmt.Errorf("kafkajobs: dead-letter copy to %q pending (produced again only if the broker refuses it; the job does not run again): %w", d.deadLetter, err)
	}
	return fmt.Errorf("kafkajobs: dead-letter copy to %q (retried; the job does not run again): %w", d.deadLetter, err)
}

// freshCopy returns a new record with the topic, key, value and headers
// of tmpl: kgo fills in a produced record (partition, offset, timestamp,
// producer fields) and may still hold one whose produce was given up.
func freshCopy(tmpl *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: tmpl.Topic, Key: tmpl.Key, Value: tmpl.Value, Headers: tmpl.Headers}
}

// holdDead turns the handed-out entry e into a dead record with the copy
// dc. A copy that failed is produced again after copyRetryDelay (the
// retrier is woken); an unanswered one stays in flight until
// copyAnswered, and if that already ran, its outcome applies now: landed
// reports a copy that landed, e is then done. A delivery of a revoked
// partition returns consumer.ErrStaleDelivery.
func (d *Driver) holdDead(ps *partState, e *entry, dc *deadCopy, unanswered bool) (landed bool, err error) {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.staleLocked(ps); err != nil {
		return false, err
	}
	e.state = stateDead
	e.dead = dc
	ps.ndead++
	c.active--
	switch {
	case unanswered && dc.answered:
		landed = dc.answerErr == nil
		d.copyResultLocked(ps, e, dc.answerErr, time.Now())
		if !landed {
			d.kickDeadLocked()
		}
	case unanswered: // copyAnswered takes it
	default:
		dc.inFlight = false
		dc.at = time.Now().Add(dc.wait)
		d.kickDeadLocked()
	}
	c.notifyLocked()
	return landed, nil
}

// copyAnswered runs in the promise of an attempt at dc, the copy of e,
// whose wait ended before kgo reported its outcome err. The outcome
// applies as for an attempt answered in time, unless e's partition was
// dropped or the driver closed meanwhile. When Settle has not held e as
// dead yet, the outcome waits in dc for holdDead.
func (d *Driver) copyAnswered(ps *partState, e *entry, dc *deadCopy, err error) {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.dead != dc {
		dc.answered, dc.answerErr = true, err
		return
	}
	if ps.revoked || c.closed {
		dc.inFlight = false
		return
	}
	d.copyResultLocked(ps, e, err, time.Now())
	if err != nil {
		d.kickDeadLocked() // the retrier learns the next attempt's time
	}
}

// copyResultLocked applies the outcome err of the attempt in flight at the
// copy of the dead record e of ps (not revoked): done, or retried after
// twice the last wait (at most maxCopyRetryDelay).
func (d *Driver) copyResultLocked(ps *partState, e *entry, err error, now time.Time) {
	c := d.cons
	dc := e.dead
	dc.inFlight = false
	args := []any{"id", e.meta.id, "job", e.meta.job, "topic", e.rec.Topic,
		"partition", e.rec.Partition, "offset", e.rec.Offset, "dead_letter", d.deadLetter}
	if err != nil {
		dc.wait = min(2*dc.wait, maxCopyRetryDelay)
		dc.at = now.Add(dc.wait)
		d.log.Warn("dead-letter copy failed; will retry", append(args, "err", err, "retry_in", dc.wait)...)
		// A revocation may wait for the attempt that just ended.
		c.notifyLocked()
		return
	}
	d.log.Info("dead-letter copy produced after a failure or a late answer", args...)
	e.dead = nil
	ps.ndead--
	d.doneLocked(ps, e, now) // notifies
}

// kickDeadLocked wakes the dead-letter retrier.
func (d *Driver) kickDeadLocked() {
	select {
	case d.cons.deadKick <- struct{}{}:
	default:
	}
}

// deadItem is one dead record whose copy an attempt produces.
type deadItem struct {
	ps *partState
	e  *entry
}

// deadLetterLoop produces the pending dead-letter copies, each once its
// wait passed, until ctx is done. Close owns it.
func (d *Driver) deadLetterLoop(ctx context.Context) {
	c := d.cons
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for ctx.Err() == nil {
		due, next := c.takeDueDead(time.Now())
		if len(due) > 0 {
			d.retryDead(ctx, due)
			continue
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
		case <-c.deadKick:
		case <-tick:
		}
		timer.Stop()
	}
}

// takeDueDead marks the dead records whose copy is due as in flight and
// returns them, with the earliest later attempt time (zero if none).
// Partitions being revoked are skipped.
func (c *consumerState) takeDueDead(now time.Time) ([]deadItem, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		due  []deadItem
		next time.Time
	)
	for _, ps := range c.order {
		if ps.ndead == 0 || ps.revoking {
			continue
		}
		for _, e := range ps.entries {
			if e.state != stateDead || e.dead.inFlight {
				continue
			}
			if at := e.dead.at; at.After(now) {
				if next.IsZero() || at.Before(next) {
					next = at
				}
				continue
			}
			e.dead.inFlight = true
			due = append(due, deadItem{ps, e})
		}
	}
	return due, next
}

// retryDead produces the copies of due, within the producer's delivery
// timeout, and settles each record that landed for good; the others wait
// twice as long as last time (at most maxCopyRetryDelay). A copy still
// unanswered then stays in flight until copyAnswered. Results for
// partitions dropped meanwhile are ignored: their new owner has the
// records.
func (d *Driver) retryDead(ctx context.Context, due []deadItem) {
	recs := make([]*kgo.Record, len(due))
	dcs := make([]*deadCopy, len(due))
	for i, it := range due {
		dcs[i] = it.e.dead // stays while the attempt is in flight
		recs[i] = freshCopy(dcs[i].rec)
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.ProducerOptions.DeliveryTimeout)
	errs := d.prod.produceThen(pctx, recs, func(i int, err error) {
		d.copyAnswered(due[i].ps, due[i].e, dcs[i], err)
	})
	cancel()

	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for i, it := range due {
		ps, e := it.ps, it.e
		if errors.Is(errs[i], errUnanswered) {
			continue // copyAnswered takes it (or took it already)
		}
		if ps.revoked {
			e.dead.inFlight = false
			continue
		}
		d.copyResultLocked(ps, e, errs[i], now)
	}
	// A revocation may wait for the attempt that just ended.
	c.notifyLocked()
}
