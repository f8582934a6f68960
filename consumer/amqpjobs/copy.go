package amqpjobs

import (
	"maps"
	"slices"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// copyTarget says where a copy of a delivery goes, which decides what
// becomes of its expiration property.
type copyTarget int

const (
	// toQueue: straight back to the work queue (Retry, Requeue or
	// Release without a delay).
	toQueue copyTarget = iota
	// viaDelay: through the delay queue, which dead-letters it to the
	// work queue when the delay has passed.
	viaDelay
	// toDeadLetter: to the pipeline's dead_letter queue.
	toDeadLetter
)

// routingHeader reports whether a table entry is a routing instruction
// of the original publish (sender-selected distribution): the broker
// keeps CC on the delivery, and a copy carrying it would be routed to
// those queues once more.
func routingHeader(k string) bool {
	return k == "CC" || k == "BCC"
}

// copyOf returns the message that republishes the delivery of st to
// target: the same message, with only the driver's bookkeeping changed.
//
//   - Body and properties are the delivery's (content type and
//     encoding, delivery mode, priority, correlation id, reply-to,
//     message id, timestamp, type, app id, user id), unset ones staying
//     unset. Three exceptions: a dead_letter copy is persistent; user_id is kept only when it is the user the
//     driver logs in as, since the broker refuses any other from it (406,
//     unless that user has the impersonator tag); and expiration, below.
//   - expiration is kept on a copy to the work queue; its TTL counts
//     from the copy's publish (basic.nack with requeue would keep the
//     original's clock).
//     Through the delay queue it is left off: the delay queue expires a
//     message at the earlier of its own TTL and the message's, so a
//     shorter expiration would end the delay early, and the broker drops
//     the property when it dead-letters the message back anyway. On a
//     dead_letter copy it is left off too, as RabbitMQ's own
//     dead-lettering does, so that a dead letter stays until someone
//     looks at it. In both cases the value goes into
//     HeaderOriginalExpiration.
//   - Table headers are the delivery's, foreign ones (written by other
//     producers) kept as AMQP headers with their types, except the
//     broker's records of earlier hops (x-death, x-first-death-*,
//     x-last-death-*, x-delivery-count) and CC/BCC (see routingHeader).
//   - The bookkeeping is written as Publish writes it (rr_* headers,
//     x-attempt = attempt, a fresh pv_msg due now, plus o.Delay
//     through the delay queue), rr_headers holding the
//     delivery's rr_headers (less stale bookkeeping and broker headers)
//     with o.Headers merged in. An o.Headers entry
//     equal to what the worker was given is no change, so a worker that
//     sends back every header it got leaves foreign headers where they
//     are; one that changes a foreign header moves it into rr_headers
//     (the table entry goes, so the message does not carry two values).
//     Broker headers and x-attempt in o.Headers are ignored.
//   - extra (dead-letter headers) is added last; on a dead_letter copy
//     HeaderDeadReason is cut to consumer.MaxDeadReason bytes and
//     HeaderDeadAt is set.
func (st *settlement) copyOf(o consumer.Outcome, attempt int, target copyTarget, extra amqp.Table) (amqp.Publishing, error) {
	m := &st.in.m
	table := make(amqp.Table, len(m.Headers)+len(extra)+1)
	for k, v := range m.Headers {
		if !internal(k) && !brokerHeader(k) && !routingHeader(k) {
			table[k] = v
		}
	}
	own := maps.Clone(st.dec.own)
	if own == nil {
		own = map[string][]string{}
	}
	// rr_headers of a message that went through RoadRunner's Requeue
	// holds its table entries, stringified: bookkeeping and broker hop
	// headers there are stale (the table gets fresh ones below).
	maps.DeleteFunc(own, func(k string, _ []string) bool { return internal(k) || brokerHeader(k) })
	for k, v := range o.Headers {
		if brokerHeader(k) {
			continue
		}
		if cur, ok := st.del.Headers[k]; ok && slices.Equal(cur, v) {
			continue
		}
		own[k] = v
		delete(table, k)
	}
	p := amqp.Publishing{
		ContentType:     m.ContentType,
		ContentEncoding: m.ContentEncoding,
		DeliveryMode:    m.DeliveryMode,
		Priority:        m.Priority,
		CorrelationId:   m.CorrelationId,
		ReplyTo:         m.ReplyTo,
		MessageId:       m.MessageId,
		Timestamp:       m.Timestamp,
		Type:            m.Type,
		AppId:           m.AppId,
	}
	if target == toDeadLetter {
		// A dead letter stays until someone looks at it: also across a
		// broker restart, whatever mode the original had.
		p.DeliveryMode = amqp.Persistent
	}
	if m.UserId == st.d.user {
		p.UserId = m.UserId
	}
	switch {
	case target == toQueue:
		p.Expiration = m.Expiration
	case m.Expiration != "":
		table[HeaderOriginalExpiration] = m.Expiration
	}
	due := time.Now()
	if target == viaDelay {
		due = due.Add(o.Delay)
	}
	maps.Copy(table, extra)
	if target == toDeadLetter {
		// What an operator reads in `jobs failed list`, bounded.
		if r, ok := table[HeaderDeadReason].(string); ok {
			table[HeaderDeadReason] = consumer.TruncateReason(r)
		}
		table[HeaderDeadAt] = time.Now().UnixMilli()
	}
	pipeline := st.dec.pipeline
	if pipeline == "" {
		pipeline = st.d.name
	}
	j := consumer.Job{
		ID:       st.del.ID,
		Name:     st.del.Job,
		Pipeline: pipeline,
		Payload:  st.del.Body,
		Headers:  own,
		Priority: st.del.Priority,
		Key:      st.del.Key,
	}
	// The routing key encode returns is not used: a copy goes to a queue
	// by name.
	enc, _, err := encode(j, st.d.name, attempt, due, "", table)
	if err != nil {
		return amqp.Publishing{}, err
	}
	p.Headers, p.Body = enc.Headers, enc.Body
	return p, nil
}
