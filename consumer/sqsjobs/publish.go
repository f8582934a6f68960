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
	"github.com/aws/smithy-go"
	"github.com/google/uuid"

	"github.com/pipevisor/pipevisor/consumer"
)

// maxBatchBytes is SQS's limit for the total size of a batch request's
// messages (256 KiB).
const maxBatchBytes = 256 * 1024

// Publish sends jobs to the queue, in order, with SendMessageBatch (10 at
// a time, within SQS's batch size limit; SendMessage for a single job),
// and returns once SQS accepted every one. A job without an ID gets a
// random UUID. Job.Pipeline empty means this pipeline. On a FIFO queue the
// job's Key is its MessageGroupId (else message_group_id, else
// DefaultGroupID) and its ID the MessageDeduplicationId.
//
// Every job is checked first: a delay over 900s (ErrDelayTooLong) or any
// delay on a FIFO queue (ErrFIFODelay) fails the call before anything is
// sent. When SQS refuses some jobs of a batch, the rest of that batch is
// published and later batches are not sent (ErrNotSent), so that jobs of
// one key are never reordered. Failures come as a *consumer.BatchError
// keyed by index into jobs: a job SQS refused (an entry of the batch's
// Failed list, or a call SQS answered with a client fault) or never sent
// is certainly not in the queue; the jobs of a call that ended without an
// answer (network, timeout, ctx, a server fault) wrap consumer.ErrInDoubt:
// SQS may have taken them. After Close, Publish returns
// consumer.ErrClosed.
func (d *Driver) Publish(ctx context.Context, jobs []consumer.Job) error {
	if d.st.isClosing() {
		return consumer.ErrClosed
	}
	failed := map[int]error{}
	for i, j := range jobs {
		switch {
		case j.Delay > MaxDelay:
			failed[i] = fmt.Errorf("%w: job delay %s (SQS allows %s)", ErrDelayTooLong, j.Delay, MaxDelay)
		case j.Delay > 0 && d.fifo:
			failed[i] = ErrFIFODelay
		}
	}
	if len(failed) > 0 {
		for i := range jobs {
			if failed[i] == nil {
				failed[i] = ErrNotSent
			}
		}
		return &consumer.BatchError{Failed: failed}
	}
	outs := make([]types.SendMessageBatchRequestEntry, len(jobs))
	sizes := make([]int, len(jobs))
	for i, j := range jobs {
		outs[i], sizes[i] = d.entryFor(j, i)
	}
	for start := 0; start < len(jobs); {
		end, bytes := start, 0
		for end < len(jobs) && end-start < 10 && (end == start || bytes+sizes[end] <= maxBatchBytes) {
			bytes += sizes[end]
			end++
		}
		errs := d.sendBatch(ctx, outs[start:end])
		for k, err := range errs {
			if err != nil {
				failed[start+k] = err
			}
		}
		if len(failed) > 0 {
			for i := end; i < len(jobs); i++ {
				failed[i] = ErrNotSent
			}
			return &consumer.BatchError{Failed: failed}
		}
		start = end
	}
	return nil
}

// entryFor builds the batch entry of job j (Id is its index i) and its
// approximate size.
func (d *Driver) entryFor(j consumer.Job, i int) (types.SendMessageBatchRequestEntry, int) {
	id := j.ID
	if id == "" {
		id = uuid.NewString()
	}
	pipeline := j.Pipeline
	if pipeline == "" {
		pipeline = d.name
	}
	priority := j.Priority
	if priority <= 0 {
		priority = d.cfg.Priority
	}
	out := jobMessage(id, j.Name, pipeline, j.Payload, j.Headers, priority, j.AutoAck, 0)
	out.attrs[attrDue] = stringAttr(dueAttr(d.dueAfter(time.Now(), j.Delay)))
	e := types.SendMessageBatchRequestEntry{
		Id:                aws.String(strconv.Itoa(i)),
		MessageBody:       aws.String(out.body),
		MessageAttributes: out.attrs,
		DelaySeconds:      seconds(j.Delay),
	}
	if d.fifo {
		g := j.Key
		if g == "" {
			g = d.defaultGroup()
		}
		e.MessageGroupId = aws.String(g)
		e.MessageDeduplicationId = aws.String(dedupID(id))
	}
	return e, out.size()
}

// sendBatch sends up to 10 entries and returns one error per entry.
func (d *Driver) sendBatch(ctx context.Context, es []types.SendMessageBatchRequestEntry) []error {
	errs := make([]error, len(es))
	if len(es) == 1 {
		e := es[0]
		_, errs[0] = d.client.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl:               aws.String(d.queueURL),
			MessageBody:            e.MessageBody,
			MessageAttributes:      e.MessageAttributes,
			DelaySeconds:           e.DelaySeconds,
			MessageGroupId:         e.MessageGroupId,
			MessageDeduplicationId: e.MessageDeduplicationId,
		})
		if errs[0] != nil {
			errs[0] = callErr(errs[0])
		}
		return errs
	}
	// Batch entry ids are the indexes within this call.
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(d.queueURL), Entries: make([]types.SendMessageBatchRequestEntry, len(es))}
	for k, e := range es {
		e.Id = aws.String(strconv.Itoa(k))
		in.Entries[k] = e
	}
	out, err := d.client.SendMessageBatch(ctx, in)
	if err != nil {
		err = callErr(err)
		for k := range errs {
			errs[k] = err
		}
		return errs
	}
	fillFailed(errs, out.Failed)
	return errs
}

// callErr returns the error of a send call, wrapping consumer.ErrInDoubt
// unless SQS answered it with a client fault (the request was refused as
// a whole, so none of its messages was stored).
func callErr(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorFault() == smithy.FaultClient {
		return err
	}
	return fmt.Errorf("%w (%w)", err, consumer.ErrInDoubt)
}
