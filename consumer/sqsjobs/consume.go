package sqsjobs

import (
	"context"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// Receive blocks until a message is available, ctx is done (it returns
// ctx.Err()) or Close begins (consumer.ErrClosed). A Receive that gives up
// loses nothing: a message fetched for it stays buffered for the next
// Receive until half of its visibility timeout has passed (or Close),
// and is then made visible again.
func (d *Driver) Receive(ctx context.Context) (*consumer.Delivery, error) {
	e, err := d.st.take(ctx)
	if err != nil {
		return nil, err
	}
	return d.delivery(e), nil
}

// delivery wraps the handed-out e for the pipeline; its Settle settles e.
func (d *Driver) delivery(e *entry) *consumer.Delivery {
	dl := &consumer.Delivery{
		ID:       e.md.id,
		Job:      e.md.job,
		Pipeline: d.name,
		Driver:   DriverName,
		Queue:    d.queueName,
		Headers:  e.md.headers,
		Body:     e.md.body,
		Attempt:  e.md.attempt,
		Key:      e.group,
		Priority: e.md.priority,
		Enqueued: e.enqueued,
	}
	dl.SetSettle(func(ctx context.Context, o consumer.Outcome) error { return d.settle(ctx, e, o) })
	return dl
}

// shortPollPause is the longest wait between two empty short polls.
const shortPollPause = 500 * time.Millisecond

// pollLoop long-polls ReceiveMessage while Receive calls wait, asking for
// no more than they and the prefetch allow. One poll runs at a time:
// concurrent polls could split a FIFO group between two answers, and an
// emulator (moto) may hand one message to two concurrent polls. It
// returns when Close begins.
func (d *Driver) pollLoop() {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for {
		n, changed, ok := d.st.reserve()
		if !ok {
			return
		}
		if n == 0 {
			select {
			case <-changed:
				continue
			case <-d.pollCtx.Done():
				return
			}
		}
		// On a FIFO queue a long poll can be answered late while the
		// groups this driver holds are locked (moto even spins through the
		// whole wait), so while it holds messages it short-polls and
		// waits for a settle or shortPollPause between empty answers.
		short := d.fifo && d.st.holding() > 0
		wait := seconds(d.cfg.WaitTimeSeconds)
		if short {
			wait = 0
		}
		in := &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(d.queueURL),
			MaxNumberOfMessages:         int32(n),
			WaitTimeSeconds:             wait,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		}
		if d.cfg.VisibilityTimeout > 0 {
			in.VisibilityTimeout = seconds(d.cfg.VisibilityTimeout)
		}
		start := time.Now()
		out, err := d.client.ReceiveMessage(d.pollCtx, in)
		if err != nil {
			d.st.received(n, nil)
			if d.pollCtx.Err() != nil {
				return
			}
			d.st.setHealth(err)
			d.log.Warn("receive failed", "queue", d.queueName, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-d.pollCtx.Done():
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		d.st.setHealth(nil)
		d.st.received(n, d.entries(out.Messages, start))
		if len(out.Messages) > 0 {
			continue
		}
		if short {
			select {
			case <-changed:
			case <-time.After(shortPollPause):
			case <-d.pollCtx.Done():
				return
			}
		}
	}
}

// entries wraps received messages; auto-ack ones are deleted first. One
// whose delete failed is not handed out: it comes back after its
// visibility timeout (and is deleted then), instead of running now and
// again when it comes back.
func (d *Driver) entries(msgs []types.Message, start time.Time) []*entry {
	es := make([]*entry, 0, len(msgs))
	var autoAck []*entry
	until := start.Add(d.vis).UnixNano()
	for _, m := range msgs {
		e := &entry{msg: m, md: readMessage(m, d.queueName, d.cfg.Priority)}
		if d.fifo {
			e.group = e.md.group
		}
		e.unspent = d.st.takeUnspent(aws.ToString(m.MessageId))
		due, ok := d.due.take(aws.ToString(m.MessageId))
		e.enqueued = d.enqueued(e.md, due, ok)
		e.md.attempt = max(1, e.md.attempt-e.unspent)
		e.visibleUntil.Store(until)
		if e.md.autoAck {
			autoAck = append(autoAck, e)
		}
		es = append(es, e)
	}
	if len(autoAck) > 0 {
		ctx, cancel := context.WithTimeout(d.bgCtx, 30*time.Second)
		defer cancel()
		var failed map[*entry]bool
		for i, err := range d.deleteBatch(ctx, autoAck) {
			if err != nil {
				d.log.Warn("auto-ack delete failed; the job runs when the message comes back", "id", autoAck[i].md.id, "err", err)
				if failed == nil {
					failed = map[*entry]bool{}
				}
				failed[autoAck[i]] = true
			}
		}
		if failed != nil {
			es = slices.DeleteFunc(es, func(e *entry) bool { return failed[e] })
		}
	}
	return es
}

// heartbeatLoop extends the visibility of every delivery handed out and
// not settled once half of its visibility timeout has passed, and makes
// messages that waited that long in the buffer visible again. It returns
// when Close ends.
func (d *Driver) heartbeatLoop() {
	t := time.NewTicker(max(d.vis/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-d.bgCtx.Done():
			return
		case <-t.C:
		}
		due, unclaimed := d.st.due(time.Now(), d.vis)
		for len(due) > 0 {
			chunk := due[:min(len(due), 10)]
			due = due[len(chunk):]
			d.extend(chunk)
		}
		if len(unclaimed) > 0 {
			ctx, cancel := context.WithTimeout(d.bgCtx, max(d.vis/2, time.Second))
			d.st.forgive(unclaimed...)
			if err := d.changeVisibility(ctx, unclaimed, 0); err != nil {
				d.st.unforgive(unclaimed...)
				d.log.Warn("returning unclaimed messages failed", "err", err)
			}
			cancel()
		}
	}
}

// extend sets the visibility of the unclaimed entries of es to d.vis from
// now, holding each entry's hb lock so that a settle waits for it.
func (d *Driver) extend(es []*entry) {
	var live []*entry
	for _, e := range es {
		e.hb.Lock()
		if e.done {
			e.hb.Unlock()
			continue
		}
		live = append(live, e)
	}
	defer func() {
		for _, e := range live {
			e.hb.Unlock()
		}
	}()
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(d.bgCtx, max(d.vis/2, time.Second))
	defer cancel()
	start := time.Now()
	until := start.Add(d.vis).UnixNano()
	for i, err := range d.visibilityBatch(ctx, live, d.vis) {
		if err != nil {
			d.log.Warn("heartbeat failed", "id", live[i].md.id, "err", err)
			continue
		}
		live[i].visibleUntil.Store(until)
	}
}
