package amqpjobs

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// Message headers written by Publish and read on receipt. The rr_* names
// are RoadRunner's, so producers and consumers of either side interoperate.
const (
	hdrID       = "rr_id"
	hdrJob      = "rr_job"
	hdrPipeline = "rr_pipeline"
	hdrHeaders  = "rr_headers"
	hdrPriority = "rr_priority"
	hdrDelay    = "rr_delay"
	hdrAutoAck  = "rr_auto_ack"
	// hdrKey carries consumer.Job.Key (ours).
	hdrKey = "rr_key"
	// hdrMsg is unique to each publish (ours): a UUID, then after a slash
	// when the job is due (hdrDue). A redelivered message whose hdrMsg
	// was acked on a connection that died since is a duplicate of a job
	// already done (the ack was lost in the close).
	hdrMsg = "pv_msg"
	// hdrAttempt is the attempt number of a message, written when it is
	// not 1 (a republished copy).
	hdrAttempt = "x-attempt"
	// hdrDeliveryCount is set by quorum queues on redelivered messages.
	hdrDeliveryCount = "x-delivery-count"
	// hdrRoutingKey in a job's headers overrides the routing key of that
	// one publish (RoadRunner's per-job override); it is not sent.
	hdrRoutingKey = "x-routing-key"
	// HeaderDeadReason is the header carrying Outcome.Reason on a message
	// published to the pipeline's dead_letter queue.
	HeaderDeadReason = "x-dead-reason"
	// HeaderDeadQueue is the queue a dead-lettered copy came from.
	HeaderDeadQueue = "x-dead-queue"
	// HeaderOriginalExpiration carries the expiration property of the
	// delivery a copy was made from when the copy must not keep it: a
	// copy through the delay queue or to the dead_letter queue (see
	// copyOf).
	HeaderOriginalExpiration = "x-original-expiration"
)

// internal reports whether a table entry is driver bookkeeping that is not
// handed to the worker as a user header.
func internal(k string) bool {
	switch k {
	case hdrID, hdrJob, hdrPipeline, hdrHeaders, hdrPriority, hdrDelay, hdrAutoAck, hdrKey, hdrAttempt, hdrMsg, hdrDue:
		return true
	}
	return false
}

// brokerHeader reports whether a user header was added by the broker on a
// previous hop (dead-lettering, quorum redelivery); such headers are not
// copied onto a republished message.
func brokerHeader(k string) bool {
	return k == "x-death" || k == hdrDeliveryCount || k == hdrAttempt ||
		strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-")
}

// tableValue converts a decoded YAML or JSON value into one an AMQP table
// accepts: integral floats become int64 (JSON numbers from jobs.Declare),
// maps become tables.
func tableValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, int8, int16, int32, int64, uint8, uint16, uint32, float32, []byte, time.Time:
		return x, nil
	case int:
		return int64(x), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, fmt.Errorf("%d is out of range", x)
		}
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("%d is out of range", x)
		}
		return int64(x), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), nil
		}
		return x, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := tableValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		t := amqp.Table{}
		for k, e := range x {
			c, err := tableValue(e)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	default:
		return nil, fmt.Errorf("value of type %T cannot be an AMQP argument", v)
	}
}

// queueArgs returns cfg.QueueHeaders as a table (Validate has checked
// every value).
func queueArgs(h map[string]any) amqp.Table {
	if len(h) == 0 {
		return nil
	}
	t := amqp.Table{}
	for k, v := range h {
		c, err := tableValue(v)
		if err == nil {
			t[k] = c
		}
	}
	return t
}

// message is what one publish sends: the target and the message. A
// message with a delay goes through the delay queue of (exchange, key).
type message struct {
	exchange, key string
	delay         time.Duration
	pub           amqp.Publishing
}

// encode builds the AMQP message of j. pipeline is used when j.Pipeline is
// empty; attempt is written as x-attempt when it is not 1 (a message
// without x-attempt is read as attempt 1), and pv_msg names the publish
// and when the job is due: due, or when due is zero now plus j.Delay
// (msgToken). extra is added last. It also returns the routing key to
// use (the per-job x-routing-key header, else fallback).
//
// A first publish without key has 8 table entries: RoadRunner's 7 and
// pv_msg. Every entry costs the consumer a decode and an allocation or
// two in amqp091-go, and up to 8 fit in the smallest Go map it decodes
// them into.
func encode(j consumer.Job, pipeline string, attempt int, due time.Time, fallbackKey string, extra amqp.Table) (amqp.Publishing, string, error) {
	user := maps.Clone(j.Headers)
	key := fallbackKey
	if v := user[hdrRoutingKey]; len(v) > 0 {
		key = v[0]
		delete(user, hdrRoutingKey)
	}
	if user == nil {
		user = map[string][]string{}
	}
	hj, err := json.Marshal(user)
	if err != nil {
		return amqp.Publishing{}, "", fmt.Errorf("amqpjobs: encode headers of job %q: %w", j.ID, err)
	}
	if j.Pipeline == "" {
		j.Pipeline = pipeline
	}
	now := time.Now()
	if due.IsZero() {
		due = now.Add(j.Delay)
	}
	t := make(amqp.Table, 9+len(extra))
	t[hdrID] = j.ID
	t[hdrJob] = j.Name
	t[hdrPipeline] = j.Pipeline
	t[hdrHeaders] = hj
	t[hdrPriority] = j.Priority
	t[hdrDelay] = int64(j.Delay / time.Second)
	t[hdrAutoAck] = j.AutoAck
	t[hdrMsg] = msgToken(due)
	if attempt != 1 {
		t[hdrAttempt] = int64(attempt)
	}
	if j.Key != "" {
		t[hdrKey] = j.Key
	}
	maps.Copy(t, extra)
	return amqp.Publishing{
		Headers:      t,
		ContentType:  "application/octet-stream",
		DeliveryMode: amqp.Persistent,
		MessageId:    j.ID,
		Timestamp:    now,
		Body:         j.Payload,
	}, key, nil
}

// decoded is what the driver reads from a delivery's headers.
type decoded struct {
	id, job, key string
	pipeline     string
	// headers are the user headers (nil when there are none).
	headers map[string][]string
	// own is rr_headers as decoded (nil when absent, empty or not
	// JSON): the headers a copy keeps in rr_headers, apart from the
	// message's other table entries, which it keeps as they are.
	own      map[string][]string
	priority int64
	autoAck  bool
	// attempt is x-attempt (1 when absent); deliveryCount is the quorum
	// x-delivery-count (0 when absent).
	attempt       int
	deliveryCount int
	hasCount      bool
	thirdParty    bool
}

// decode reads the job fields of m. jobHeader names the header holding the
// job name of third-party messages; newID makes an id when there is none.
func decode(m *amqp.Delivery, jobHeader string, defPriority int64, newID func() string) decoded {
	h := m.Headers
	out := decoded{
		priority: defPriority,
		attempt:  1,
	}
	for k, v := range h {
		if internal(k) {
			continue
		}
		if out.headers == nil {
			out.headers = make(map[string][]string, len(h))
		}
		out.headers[k] = []string{stringify(v)}
	}
	if raw, ok := h[hdrHeaders]; ok {
		var b []byte
		switch x := raw.(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		}
		// "{}" is what Publish writes for a job without headers: skip
		// the decoder for it.
		if len(b) > 2 {
			if user, ok := decodeUserHeaders(b); ok {
				if out.headers == nil {
					// The usual case: no table entries for the
					// worker. Nobody writes to either map (copies
					// clone own), so they can be one.
					out.headers = user
				} else {
					maps.Copy(out.headers, user)
				}
				out.own = user
			}
		}
	}
	out.id, _ = h[hdrID].(string)
	if out.id == "" {
		out.thirdParty = true
		out.id = m.MessageId
		if out.id == "" {
			out.id = newID()
		}
	}
	out.job, _ = h[hdrJob].(string)
	if out.job == "" && jobHeader != "" {
		if v, ok := h[jobHeader]; ok {
			out.job = stringify(v)
		}
	}
	if out.job == "" {
		out.job = m.RoutingKey
	}
	out.pipeline, _ = h[hdrPipeline].(string)
	out.key, _ = h[hdrKey].(string)
	if p, ok := toInt(h[hdrPriority]); ok && p != 0 {
		out.priority = p
	}
	if b, ok := h[hdrAutoAck].(bool); ok {
		out.autoAck = b
	}
	if a, ok := toInt(h[hdrAttempt]); ok && a > 0 {
		out.attempt = int(a)
	}
	if c, ok := toInt(h[hdrDeliveryCount]); ok && c >= 0 {
		out.deliveryCount = int(c)
		out.hasCount = true
	}
	return out
}

// toInt reads an integer table value of any width (or a decimal string).
func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	case []byte:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// stringify renders a table value as a header string: text as is, numbers
// in decimal, times in RFC 3339, nested tables and arrays as JSON.
func stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case amqp.Decimal:
		return fmt.Sprintf("%de-%d", x.Value, x.Scale)
	case amqp.Table, []any:
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
	if n, ok := toInt(v); ok {
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprint(v)
}

// jsonable turns tables and byte slices into values encoding/json renders
// readably.
func jsonable(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonable(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return v
}
