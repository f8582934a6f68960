package amqpjobs

import (
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// When a message becomes due (ours), in Unix milliseconds: push time plus
// the job's delay for Publish, the copy's publish time plus its delay for
// every copy the driver sends. It is the source of
// consumer.Delivery.Enqueued and travels in pv_msg after the publish's
// UUID ("UUID/MS", msgToken), which saves the consumer a table entry.
// Messages published before carry it in a pv_due header of its own,
// which is still read; neither is a user header.
const hdrDue = "pv_due"

// delayPrefix starts the name of every delay queue of the driver.
const delayPrefix = "pipevisor.delay."

// hdrXDelay is the delay header of RabbitMQ's delayed message exchange
// plugin; hdrXDeath the broker's record of dead-letter hops.
const (
	hdrXDelay = "x-delay"
	hdrXDeath = "x-death"
)

// msgToken is the pv_msg of a publish due at t: a fresh UUID, a slash
// and t in Unix milliseconds.
func msgToken(t time.Time) string {
	return uuid.NewString() + "/" + strconv.FormatInt(t.UnixMilli(), 10)
}

// dueMillis returns when the message with table h is due, in Unix
// milliseconds (see hdrDue), or false when it does not say.
func dueMillis(h amqp.Table) (int64, bool) {
	if ms, ok := toInt(h[hdrDue]); ok && ms > 0 {
		return ms, true
	}
	tok, _ := h[hdrMsg].(string)
	i := strings.LastIndexByte(tok, '/')
	if i < 0 {
		return 0, false
	}
	ms, err := strconv.ParseInt(tok[i+1:], 10, 64)
	return ms, err == nil && ms > 0
}

// enqueued returns when the job of m became due, the Delivery.Enqueued
// of its delivery, or the zero time when that is not known:
//
//   - A message the broker dead-lettered to this queue from another one
//     (its last x-death hop is not one of the driver's delay queues)
//     came due at that hop, which no header dates precisely: zero.
//   - The due time when the message has it (our publishes and copies). A
//     message requeued in place (basic.nack with requeue) keeps it: it
//     goes back to its position in the queue, as it was.
//   - Otherwise (a foreign producer) the timestamp property, but only
//     when nothing says the message was delayed: no rr_delay above zero
//     (RoadRunner's producers), no x-delay (the delayed message exchange
//     plugin) and no dead-letter hop; else zero. The property has whole
//     seconds.
func enqueued(m *amqp.Delivery) time.Time {
	deaths, dead := m.Headers[hdrXDeath].([]any)
	if dead && len(deaths) > 0 {
		last, _ := deaths[0].(amqp.Table) // the most recent hop first
		if q, _ := last["queue"].(string); !strings.HasPrefix(q, delayPrefix) {
			return time.Time{}
		}
	}
	if ms, ok := dueMillis(m.Headers); ok {
		return time.UnixMilli(ms)
	}
	if m.Timestamp.IsZero() || dead {
		return time.Time{}
	}
	if _, ok := m.Headers[hdrXDelay]; ok {
		return time.Time{}
	}
	if v, ok := m.Headers[hdrDelay]; ok {
		if n, ok := toInt(v); !ok || n > 0 {
			return time.Time{}
		}
	}
	return m.Timestamp
}
