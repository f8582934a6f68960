package kafkajobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Retry copies whose produce is unanswered.
//
// With retry_topic, a Retry or Requeue is settled by producing a copy of
// the record to the retry topic; when that produce fails, the record is
// retried in place instead (see Driver.settle). A copy whose wait (the
// settle context, plus onWireGrace) ends before kgo reported its outcome
// may still land: kgo keeps a record it may have sent until the broker
// answers. Retrying such a record in place would run the job twice, here
// and from the retry topic. So the record is held as stateCopying until
// the copy's own promise reports its outcome (producer.produceThen):
//   - success: the record is done, as for a copy that landed in time;
//   - failure: the record is retried in place, as for a copy that failed
//     in time (the attempt counts, the headers the worker asked for, its
//     delay but at least copyRetryDelay).
//
// Meanwhile, as for a dead record whose copy is pending (deadletter.go),
// the record is not handed out, its partition (ordering: partition) or
// key (ordering: key) waits, the commit point stays before it, and it
// counts neither as active nor as ready or delayed in Stat. The outcome
// comes: kgo fails a record past producer_options.delivery_timeout as
// soon as it safely may, a record it sent once the broker answered its
// request, and every record at Close. A revocation waits for the outcome
// as for a running job; a record still held when its partition is
// dropped, or when the driver closes, is left uncommitted (the next
// owner runs the job again, and the copy may land as well). Outcomes
// reported after that are ignored.

// retryCopy is the unanswered retry copy of a record in stateCopying and
// the in-place retry that stands in for it if the broker refuses it. Its
// fields are guarded by consumerState.mu.
type retryCopy struct {
	delay   time.Duration       // the in-place retry's delay
	headers map[string][]string // the in-place retry's user headers
	// answered and answerErr keep the outcome of the copy when kgo
	// reports it late but before the record was held as stateCopying.
	answered  bool
	answerErr error
}

// settleRetryCopy produces rec, the retry copy of the handed-out entry e
// of ps, and marks e done once it landed. When the copy fails, e is
// retried in place after delay with headers and the error is returned.
// When ctx ends before kgo reported the copy's outcome, e is held until
// it does (see the comment at the top of this file) and an error saying
// the copy is pending is returned.
func (d *Driver) settleRetryCopy(ctx context.Context, ps *partState, e *entry, rec *kgo.Record, delay time.Duration, headers map[string][]string) error {
	rc := &retryCopy{delay: delay, headers: headers}
	err := d.prod.produceThen(ctx, []*kgo.Record{rec}, func(_ int, err error) {
		d.retryCopyAnswered(ps, e, rc, err)
	})[0]
	if err == nil {
		return d.finish(ps, e)
	}
	if !errors.Is(err, errUnanswered) {
		return errors.Join(fmt.Errorf("kafkajobs: retry copy to %q: %w", d.cfg.RetryTopic, err),
			d.redeliver(ps, e, delay, 1, headers))
	}
	answered, lateErr, herr := d.holdRetryCopy(ps, e, rc)
	switch {
	case herr != nil:
		return fmt.Errorf("kafkajobs: retry copy to %q: %w; %w", d.cfg.RetryTopic, err, herr)
	case answered && lateErr == nil:
		return nil
	case answered:
		return fmt.Errorf("kafkajobs: retry copy to %q (retried in place): %w", d.cfg.RetryTopic, lateErr)
	}
	return fmt.Errorf("kafkajobs: retry copy to %q pending (the job is retried in place only if the broker refuses it): %w", d.cfg.RetryTopic, err)
}

// holdRetryCopy holds the handed-out entry e of ps as stateCopying with
// its unanswered copy rc, until retryCopyAnswered. If that already ran,
// its outcome applies now instead: answered is true and lateErr is the
// copy's outcome (nil: e is done; else e is retried in place). A
// delivery of a revoked partition returns consumer.ErrStaleDelivery.
func (d *Driver) holdRetryCopy(ps *partState, e *entry, rc *retryCopy) (answered bool, lateErr, err error) {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.staleLocked(ps); err != nil {
		return false, nil, err
	}
	c.active--
	if rc.answered {
		d.retryCopyResultLocked(ps, e, rc, rc.answerErr, time.Now())
		return true, rc.answerErr, nil
	}
	e.state = stateCopying
	e.retry = rc
	c.notifyLocked()
	return false, nil, nil
}

// retryCopyAnswered runs in the promise of the retry copy rc of e, whose
// wait ended before kgo reported its outcome err. The outcome applies
// unless e's partition was dropped or the driver closed meanwhile. When
// Settle has not held e yet, the outcome waits in rc for holdRetryCopy.
func (d *Driver) retryCopyAnswered(ps *partState, e *entry, rc *retryCopy, err error) {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.retry != rc {
		rc.answered, rc.answerErr = true, err
		return
	}
	e.retry = nil
	if ps.revoked || c.closed {
		return
	}
	d.retryCopyResultLocked(ps, e, rc, err, time.Now())
}

// retryCopyResultLocked applies the outcome err of the retry copy rc of
// e of ps (not revoked, not counted as active): done, or retried in
// place.
func (d *Driver) retryCopyResultLocked(ps *partState, e *entry, rc *retryCopy, err error, now time.Time) {
	args := []any{"id", e.meta.id, "job", e.meta.job, "topic", e.rec.Topic,
		"partition", e.rec.Partition, "offset", e.rec.Offset, "retry_topic", d.cfg.RetryTopic}
	if err != nil {
		d.log.Warn("retry copy failed after a late answer; retrying in place", append(args, "err", err, "retry_in", rc.delay)...)
		d.cons.putBackLocked(ps, e, now, rc.delay, 1, rc.headers)
		return
	}
	d.log.Info("retry copy produced after a late answer", args...)
	d.doneLocked(ps, e, now)
}
