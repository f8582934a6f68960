package amqpjobs

import (
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// hdrDue (ours) is when a message becomes due, in Unix milliseconds:
// written by Publish (push time plus the job's delay) and on every copy
// the driver sends (the copy's publish time plus its delay). It is the
// source of consumer.Delivery.Enqueued and is not a user header.
const hdrDue = "pv_due"

// delayPrefix starts the name of every delay queue of the driver.
const delayPrefix = "pipevisor.delay."

// hdrXDelay is the delay header of RabbitMQ's delayed message exchange
// plugin; hdrXDeath the broker's record of dead-letter hops.
const (
	hdrXDelay = "x-delay"
	hdrXDeath = "x-death"
)

// dueHeader is the hdrDue value of a message due at t.
func dueHeader(t time.Time) int64 { return t.UnixMilli() }

// enqueued returns when the job of m became due, the Delivery.Enqueued
// of its delivery, or the zero time when that is not known:
//
//   - A message the broker dead-lettered to this queue from another one
//     (its last x-death hop is not one of the driver's delay queues)
//     came due at that hop, which no header dates precisely: zero.
//   - pv_due when the message has it (our publishes and copies). A
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
	if ms, ok := toInt(m.Headers[hdrDue]); ok && ms > 0 {
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
