package sqsjobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/pipevisor/pipevisor/consumer"
)

// flushDelay is how long the deleter waits for more acks to batch.
const flushDelay = 2 * time.Millisecond

// deleteReq is one Ack waiting for the deleter.
type deleteReq struct {
	e    *entry
	done chan error // buffered: the deleter never blocks on it
}

// settle carries out o for the handed-out e (Delivery.Settle makes sure it
// runs once).
func (d *Driver) settle(ctx context.Context, e *entry, o consumer.Outcome) error {
	if e.md.autoAck {
		return nil // deleted on receipt
	}
	if d.st.isClosed() {
		return consumer.ErrClosed
	}
	e.claim()
	keepOrder, err := d.apply(ctx, e, o)
	release := d.st.settled(e, keepOrder && err == nil)
	var relErr error
	if len(release) > 0 {
		// Later messages of the group never ran: their receive is no
		// attempt.
		d.st.forgive(release...)
		if relErr = d.changeVisibility(ctx, release, 0); relErr != nil {
			d.st.unforgive(release...)
		}
	}
	if err != nil {
		return fmt.Errorf("sqsjobs: %s job %s: %w", o.Action, e.md.id, errors.Join(err, relErr))
	}
	return relErr
}

// apply performs o on SQS. keepOrder is true when the message left the
// queue (its FIFO group may go on with the next message).
func (d *Driver) apply(ctx context.Context, e *entry, o consumer.Outcome) (keepOrder bool, err error) {
	switch o.Action {
	case consumer.Ack:
		return true, d.deleteMessage(ctx, e)
	case consumer.Retry:
		delay := o.Delay
		if delay <= 0 {
			delay = d.cfg.ErrorVisibilityTimeout
		}
		return false, d.changeVisibility(ctx, []*entry{e}, delay)
	case consumer.Release:
		// The job did not run: the next receive is the same attempt.
		d.st.forgive(e)
		if err := d.changeVisibility(ctx, []*entry{e}, o.Delay); err != nil {
			d.st.unforgive(e)
			return false, err
		}
		return false, nil
	case consumer.Requeue:
		if sameHeaders(e.md.headers, o.Headers) {
			return false, d.changeVisibility(ctx, []*entry{e}, o.Delay)
		}
		return false, d.requeueCopy(ctx, e, consumer.MergeHeaders(e.md.headers, o.Headers), o.Delay)
	case consumer.Dead:
		return d.dead(ctx, e, o.Reason)
	default:
		return false, errors.Join(fmt.Errorf("%w %d", consumer.ErrUnknownAction, o.Action), d.changeVisibility(ctx, []*entry{e}, 0))
	}
}

// requeueCopy sends a copy of e with headers and delay, then deletes e.
func (d *Driver) requeueCopy(ctx context.Context, e *entry, headers map[string][]string, delay time.Duration) error {
	if delay > MaxDelay {
		return fmt.Errorf("%w: requeue with changed headers after %s (SQS allows %s)", ErrDelayTooLong, delay, MaxDelay)
	}
	sendDelay := delay
	if d.fifo {
		sendDelay = 0 // a FIFO message has no delay of its own
	}
	due := d.dueAfter(time.Now(), sendDelay)
	out := copyMessage(e.msg, e.md, headers, e.md.attempt, map[string]string{attrDue: dueAttr(due)})
	in := &sqs.SendMessageInput{
		QueueUrl:          aws.String(d.queueURL),
		MessageBody:       aws.String(out.body),
		MessageAttributes: out.attrs,
	}
	if d.fifo {
		in.MessageGroupId = aws.String(e.group)
		in.MessageDeduplicationId = aws.String(uuid.NewString())
	} else {
		in.DelaySeconds = seconds(delay)
	}
	if _, err := d.client.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send requeued copy: %w", err)
	}
	return d.deleteMessage(ctx, e)
}

// sendBack sends again, at Close, the auto-ack messages that were
// received (and so deleted) but never handed out: their jobs never ran.
// Each copy keeps the job id, headers, auto-ack flag and the attempts
// spent (the next receive is the same attempt) and its due date; on a
// FIFO queue it goes to its group's tail with a fresh deduplication id.
// A job whose copy could not be sent is lost: it is logged and in the
// error.
func (d *Driver) sendBack(ctx context.Context, es []*entry) error {
	var errs []error
	for _, e := range es {
		due := e.enqueued
		if due.IsZero() || d.queueDelay > 0 {
			due = d.dueAfter(time.Now(), 0)
		}
		out := copyMessage(e.msg, e.md, e.md.headers, e.md.attempt-1, map[string]string{attrAutoAck: "true", attrDue: dueAttr(due)})
		in := &sqs.SendMessageInput{
			QueueUrl:          aws.String(d.queueURL),
			MessageBody:       aws.String(out.body),
			MessageAttributes: out.attrs,
		}
		if d.fifo {
			in.MessageGroupId = aws.String(e.group)
			in.MessageDeduplicationId = aws.String(uuid.NewString())
		}
		if _, err := d.client.SendMessage(ctx, in); err != nil {
			d.log.Error("auto-ack job received but never handed out is lost: sending it back failed", "id", e.md.id, "err", err)
			errs = append(errs, fmt.Errorf("send back auto-ack job %s: %w", e.md.id, err))
		}
	}
	return errors.Join(errs...)
}

// dead moves e to the dead-letter queue, leaves it in the queue
// (retain_failed_jobs, or a redrive policy), or deletes it; see the
// package documentation.
func (d *Driver) dead(ctx context.Context, e *entry, reason string) (bool, error) {
	switch {
	case d.deadURL != "":
		extra := map[string]string{attrDue: dueAttr(time.Now())}
		if reason != "" {
			extra[attrDeadReason] = consumer.TruncateReason(reason)
		}
		out := copyMessage(e.msg, e.md, e.md.headers, e.md.attempt, extra)
		in := &sqs.SendMessageInput{
			QueueUrl:          aws.String(d.deadURL),
			MessageBody:       aws.String(out.body),
			MessageAttributes: out.attrs,
		}
		if d.deadFIFO {
			g := e.group
			if g == "" {
				g = d.defaultGroup()
			}
			in.MessageGroupId = aws.String(g)
			in.MessageDeduplicationId = aws.String(uuid.NewString())
		}
		if _, err := d.client.SendMessage(ctx, in); err != nil {
			return false, fmt.Errorf("send to dead-letter queue: %w", err)
		}
		return true, d.deleteMessage(ctx, e)
	case d.cfg.RetainFailedJobs:
		// Left in the queue: visible again after error_visibility_timeout,
		// the redrive policy (if any) decides.
		return false, d.changeVisibility(ctx, []*entry{e}, d.cfg.ErrorVisibilityTimeout)
	case d.redrive:
		// SQS moves it once its receive count passes maxReceiveCount.
		return false, d.changeVisibility(ctx, []*entry{e}, 0)
	default:
		d.log.Warn("dead job discarded: no dead_letter queue and no redrive policy", "id", e.md.id, "reason", reason)
		return true, d.deleteMessage(ctx, e)
	}
}

// defaultGroup is the MessageGroupId of jobs without a key.
func (d *Driver) defaultGroup() string {
	if d.cfg.MessageGroupID != "" {
		return d.cfg.MessageGroupID
	}
	return DefaultGroupID
}

// deleteMessage hands e to the deleter and waits for SQS's answer.
func (d *Driver) deleteMessage(ctx context.Context, e *entry) error {
	r := deleteReq{e: e, done: make(chan error, 1)}
	select {
	case d.deletes <- r:
	case <-d.deleterEnd:
		return consumer.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deleteLoop batches deletes: it takes a request, gathers more for up to
// flushDelay (at most 10), and deletes them in one call. It returns when
// Close ends.
func (d *Driver) deleteLoop() {
	for {
		var batch []deleteReq
		select {
		case r := <-d.deletes:
			batch = append(batch, r)
		case <-d.deleterEnd:
			return
		}
		timer := time.NewTimer(flushDelay)
	gather:
		for len(batch) < 10 {
			select {
			case r := <-d.deletes:
				batch = append(batch, r)
			case <-timer.C:
				break gather
			case <-d.deleterEnd:
				break gather
			}
		}
		timer.Stop()
		es := make([]*entry, len(batch))
		for i, r := range batch {
			es[i] = r.e
		}
		ctx, cancel := context.WithTimeout(d.bgCtx, 30*time.Second)
		errs := d.deleteBatch(ctx, es)
		cancel()
		for i, r := range batch {
			r.done <- errs[i]
		}
	}
}

// deleteBatch deletes up to 10 messages and returns one error per entry.
func (d *Driver) deleteBatch(ctx context.Context, es []*entry) []error {
	errs := make([]error, len(es))
	if len(es) == 1 {
		_, errs[0] = d.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{
			QueueUrl: aws.String(d.queueURL), ReceiptHandle: es[0].msg.ReceiptHandle,
		})
		return errs
	}
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(d.queueURL)}
	for i, e := range es {
		in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: e.msg.ReceiptHandle,
		})
	}
	out, err := d.client.DeleteMessageBatch(ctx, in)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	fillFailed(errs, out.Failed)
	return errs
}

// changeVisibility sets the visibility timeout of every entry to delay
// (rounded up to seconds), 10 per call, and remembers when each becomes
// due (dueMemo); it returns the joined errors.
func (d *Driver) changeVisibility(ctx context.Context, es []*entry, delay time.Duration) error {
	if delay > MaxVisibility {
		return fmt.Errorf("%w: %s (SQS allows %s)", ErrDelayTooLong, delay, MaxVisibility)
	}
	var all []error
	for len(es) > 0 {
		chunk := es[:min(len(es), 10)]
		es = es[len(chunk):]
		d.due.remember(chunk, delay, time.Now())
		for i, err := range d.visibilityBatch(ctx, chunk, delay) {
			if err != nil {
				d.due.forget(chunk[i])
				all = append(all, fmt.Errorf("change visibility of %s: %w", chunk[i].md.id, err))
			}
		}
	}
	return errors.Join(all...)
}

// visibilityBatch changes the visibility of up to 10 messages and returns
// one error per entry.
func (d *Driver) visibilityBatch(ctx context.Context, es []*entry, delay time.Duration) []error {
	errs := make([]error, len(es))
	if len(es) == 1 {
		_, errs[0] = d.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(d.queueURL), ReceiptHandle: es[0].msg.ReceiptHandle,
			VisibilityTimeout: seconds(delay),
		})
		return errs
	}
	in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(d.queueURL)}
	for i, e := range es {
		in.Entries = append(in.Entries, types.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: e.msg.ReceiptHandle,
			VisibilityTimeout: seconds(delay),
		})
	}
	out, err := d.client.ChangeMessageVisibilityBatch(ctx, in)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	fillFailed(errs, out.Failed)
	return errs
}

// BatchEntryError is SQS's answer for one failed entry of a batch call.
type BatchEntryError struct {
	Code        string
	Message     string
	SenderFault bool
}

func (e *BatchEntryError) Error() string {
	return fmt.Sprintf("sqs %s: %s", e.Code, e.Message)
}

// fillFailed sets errs[i] for every failed entry whose Id is i.
func fillFailed(errs []error, failed []types.BatchResultErrorEntry) {
	for _, f := range failed {
		i, err := strconv.Atoi(aws.ToString(f.Id))
		if err != nil || i < 0 || i >= len(errs) {
			continue
		}
		errs[i] = &BatchEntryError{Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault}
	}
}
