package sqsjobs

import (
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// dueAttr is the attrDue value of a message due at t (Unix milliseconds).
func dueAttr(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// dueAfter is when a message sent at now with delay becomes visible: the
// delay rounded up to seconds, or the queue's DelaySeconds when delay is
// 0 (SQS applies it to a send that names no delay).
func (d *Driver) dueAfter(now time.Time, delay time.Duration) time.Time {
	if delay <= 0 {
		delay = d.queueDelay
	}
	return now.Add(time.Duration(seconds(delay)) * time.Second)
}

// parseDue reads an attrDue value; zero when it is not one.
func parseDue(v string) time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// enqueued returns when the job of a message received with md became due
// (consumer.Delivery.Enqueued), or the zero time when that is not known.
// remembered is what this driver recorded when it made the message
// visible again (ok false when it did not):
//
//   - remembered, when there is one (see dueMemo);
//   - zero for a message received before (ApproximateReceiveCount > 1)
//     that this driver did not give back: it became visible again at a
//     time nothing records (a visibility timeout, another consumer);
//   - pv_due, written by Publish and on every copy the driver sends
//     (dueAfter: the send time plus the delay SQS applies);
//   - for a foreign message, SentTimestamp, but only when no delay can
//     have applied: no rr_delay above zero (RoadRunner's producers) and
//     no queue DelaySeconds; else zero.
func (d *Driver) enqueued(md meta, remembered time.Time, ok bool) time.Time {
	switch {
	case ok:
		return remembered
	case md.count > 1:
		return time.Time{}
	case !md.due.IsZero():
		return md.due
	case md.delayed || d.queueDelay > 0:
		return time.Time{}
	}
	return md.sent
}

// maxDue bounds dueMemo: a message another consumer took is never seen
// here again, so the memo is cleared when it grows this large.
const maxDue = 10000

// dueMemo remembers, by MessageId, when the messages this driver made
// visible again (ChangeMessageVisibility) become due: the call's time
// plus the delay, or, for a message given back at once (delay 0), the
// date it had, as a job requeued in place keeps its date on the other
// drivers. The zero value is ready to use.
type dueMemo struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// remember records the due dates of es made visible again after delay
// from now, before the call that does it (a receive racing with it
// finds the date).
func (m *dueMemo) remember(es []*entry, delay time.Duration, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || len(m.m)+len(es) > maxDue {
		m.m = map[string]time.Time{}
	}
	for _, e := range es {
		due := e.enqueued
		if delay > 0 {
			due = now.Add(time.Duration(seconds(delay)) * time.Second)
		}
		id := aws.ToString(e.msg.MessageId)
		if due.IsZero() {
			delete(m.m, id)
			continue
		}
		m.m[id] = due
	}
}

// forget drops what remember recorded for e (its visibility change
// failed).
func (m *dueMemo) forget(e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, aws.ToString(e.msg.MessageId))
}

// take returns and forgets the due date remembered for message id.
func (m *dueMemo) take(id string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.m[id]
	if ok {
		delete(m.m, id)
	}
	return t, ok
}
