package sqsjobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/pipevisor/pipevisor/consumer"
)

// DeadScanVisibility is how long a scan of the dead_letter queue hides
// the messages it read: it makes them visible again when it is done, and
// SQS does by itself after this long should the supervisor die meanwhile.
const DeadScanVisibility = time.Minute

// deadState is the driver's side of its dead_letter queue: scans take
// turns, and messages whose retry copy was sent (or that were removed)
// but whose delete was not confirmed are remembered, so a later scan
// deletes them instead of showing them again.
type deadState struct {
	mu         sync.Mutex
	done       map[string]bool // MessageId of the dead_letter message
	visibility time.Duration   // DeadScanVisibility unless a test set it
}

var _ consumer.DeadStore = (*Driver)(nil)

// heldDead is one message a scan holds (invisible) and what it reads as.
type heldDead struct {
	msg  types.Message
	md   meta
	at   time.Time
	dead consumer.DeadJob
}

// scanDead reads every visible message of the dead_letter queue (at most
// limit shown when limit > 0), oldest first, hiding them. Caller holds
// d.dlq.mu and must release the ones it does not delete. Messages whose
// retry or removal was done are deleted on the way.
func (d *Driver) scanDead(ctx context.Context, limit int) ([]heldDead, error) {
	if d.deadURL == "" {
		return nil, fmt.Errorf("sqsjobs: pipeline %q: %w", d.name, consumer.ErrNoDeadStore)
	}
	vis := d.dlq.visibility
	if vis <= 0 {
		vis = DeadScanVisibility
	}
	var held []heldDead
	seen := map[string]bool{}
	for limit <= 0 || len(held) < limit {
		out, err := d.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(d.deadURL),
			MaxNumberOfMessages:         10,
			VisibilityTimeout:           seconds(vis),
			WaitTimeSeconds:             1, // asks every server, not a sample
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err != nil {
			return held, fmt.Errorf("sqsjobs: read dead_letter queue: %w", callErr(err))
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			mid := aws.ToString(m.MessageId)
			if seen[mid] {
				continue
			}
			seen[mid] = true
			if d.dlq.done[mid] {
				if err := d.deleteDead(ctx, m); err == nil {
					delete(d.dlq.done, mid)
				}
				continue
			}
			held = append(held, d.heldDead(m))
		}
	}
	slices.SortStableFunc(held, func(a, b heldDead) int { return a.at.Compare(b.at) })
	return held, nil
}

// heldDead reads a message of the dead_letter queue.
func (d *Driver) heldDead(m types.Message) heldDead {
	md := readMessage(m, d.queueName, d.cfg.Priority)
	h := heldDead{msg: m, md: md}
	if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		h.at = time.UnixMilli(ms)
	}
	reason := ""
	if v, ok := m.MessageAttributes[attrDeadReason]; ok {
		reason = aws.ToString(v.StringValue)
	}
	h.dead = consumer.DeadJob{
		Job: consumer.Job{
			ID:       md.id,
			Name:     md.job,
			Pipeline: d.name,
			Payload:  md.body,
			Headers:  maps.Clone(md.headers),
			Priority: md.priority,
			Key:      md.group,
		},
		Reason:   reason,
		Attempts: max(md.base, 1),
		At:       h.at,
	}
	return h
}

// releaseDead makes the held messages visible again; one it could not is
// visible again after the scan's visibility timeout anyway.
func (d *Driver) releaseDead(held []heldDead) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.bgCtx), 30*time.Second)
	defer cancel()
	for lo := 0; lo < len(held); lo += 10 {
		hi := min(lo+10, len(held))
		in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(d.deadURL)}
		for i, h := range held[lo:hi] {
			in.Entries = append(in.Entries, types.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: h.msg.ReceiptHandle, VisibilityTimeout: 0,
			})
		}
		if _, err := d.client.ChangeMessageVisibilityBatch(ctx, in); err != nil {
			d.log.Warn("dead_letter messages stay hidden until their visibility timeout", "err", err)
		}
	}
}

// deleteDead deletes a message of the dead_letter queue.
func (d *Driver) deleteDead(ctx context.Context, m types.Message) error {
	_, err := d.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(d.deadURL), ReceiptHandle: m.ReceiptHandle})
	if err != nil {
		return callErr(err)
	}
	return nil
}

// ListDead returns the messages of the pipeline's dead_letter queue,
// oldest first (by the time they were sent there), at most limit when
// limit > 0. It hides them while it reads and then makes them visible
// again: nothing is deleted. On a FIFO dead_letter queue SQS hands out
// at most one batch of a message group per scan, so a group with more
// than ten dead jobs shows only its first ones. Without a dead_letter
// queue it returns consumer.ErrNoDeadStore.
func (d *Driver) ListDead(ctx context.Context, limit int) ([]consumer.DeadJob, error) {
	d.dlq.mu.Lock()
	defer d.dlq.mu.Unlock()
	held, err := d.scanDead(ctx, limit)
	defer d.releaseDead(held)
	if err != nil {
		return nil, err
	}
	shown := held
	if limit > 0 && len(shown) > limit {
		shown = shown[:limit]
	}
	out := make([]consumer.DeadJob, len(shown))
	for i := range shown {
		out[i] = held[i].dead
	}
	return out, nil
}

// RetryDead sends the selected jobs of the dead_letter queue to the
// pipeline's queue as new messages (attempt 1, their ids, headers and
// priorities; on a FIFO queue their group and a fresh deduplication id)
// and deletes each from the dead_letter queue only once its send
// succeeded.
func (d *Driver) RetryDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	return d.doDead(ctx, sel, func(h heldDead) error {
		out := jobMessage(h.md.id, h.md.job, d.name, h.md.body, h.dead.Job.Headers, h.md.priority, false, 0)
		out.attrs[attrDue] = stringAttr(dueAttr(d.dueAfter(time.Now(), 0)))
		in := &sqs.SendMessageInput{
			QueueUrl:          aws.String(d.queueURL),
			MessageBody:       aws.String(out.body),
			MessageAttributes: out.attrs,
		}
		if d.fifo {
			g := h.md.group
			if g == "" {
				g = d.defaultGroup()
			}
			in.MessageGroupId = aws.String(g)
			in.MessageDeduplicationId = aws.String(uuid.NewString())
		}
		if _, err := d.client.SendMessage(ctx, in); err != nil {
			return fmt.Errorf("sqsjobs: retry job %s: %w", h.md.id, callErr(err))
		}
		return nil
	})
}

// RemoveDead deletes the selected jobs of the dead_letter queue.
func (d *Driver) RemoveDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	return d.doDead(ctx, sel, nil)
}

// doDead runs first (nil: nothing) on each selected message of the
// dead_letter queue and deletes the ones it succeeded for. A message whose
// delete fails is remembered and deleted by a later scan; it counts as
// done. The others are made visible again.
func (d *Driver) doDead(ctx context.Context, sel consumer.DeadSelection, first func(heldDead) error) ([]string, error) {
	d.dlq.mu.Lock()
	defer d.dlq.mu.Unlock()
	held, err := d.scanDead(ctx, 0)
	var keep []heldDead
	defer func() { d.releaseDead(keep) }()
	if err != nil {
		keep = held
		return nil, err
	}
	var ids []string
	var errs []error
	for _, h := range held {
		if !sel.Has(h.md.id) || ctx.Err() != nil {
			keep = append(keep, h)
			continue
		}
		if first != nil {
			if err := first(h); err != nil {
				errs = append(errs, err)
				keep = append(keep, h)
				continue
			}
		}
		ids = append(ids, h.md.id)
		mid := aws.ToString(h.msg.MessageId)
		if err := d.deleteDead(ctx, h.msg); err != nil {
			if d.dlq.done == nil {
				d.dlq.done = map[string]bool{}
			}
			d.dlq.done[mid] = true
			d.log.Warn("dead_letter message not deleted yet; the next look at the failed jobs deletes it", "id", h.md.id, "err", err)
		}
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return ids, errors.Join(errs...)
}
