package sqsjobs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message attributes written and read by the driver. The first six and
// rr_delay are RoadRunner's; the others are ours.
const (
	attrID       = "rr_id"
	attrJob      = "rr_job"
	attrPipeline = "rr_pipeline"
	attrHeaders  = "rr_headers"
	attrPriority = "rr_priority"
	attrAutoAck  = "rr_auto_ack"
	// attrAttempts is the number of attempts spent before this copy was
	// sent (a requeued copy starts its ApproximateReceiveCount at 1).
	attrAttempts = "rr_attempts"
	// attrEncoding is "base64" when the body had bytes SQS does not
	// accept in a message body and was encoded, "empty" when the payload
	// is empty (SQS refuses an empty body; a placeholder is sent).
	attrEncoding = "rr_encoding"
	// attrDeadReason is set on copies sent to the dead-letter queue.
	attrDeadReason = "rr_dead_reason"
	// attrDelay is the DelaySeconds of a RoadRunner producer's send
	// (read only, to know that a message was delayed).
	attrDelay = "rr_delay"
	// attrDue is when the message becomes due, in Unix milliseconds:
	// written on every send (see Driver.enqueued).
	attrDue = "pv_due"

	encodingBase64 = "base64"
	encodingEmpty  = "empty"
	emptyBody      = "-"
	// maxAttributes is SQS's limit of message attributes per message.
	maxAttributes = 10
	// System attribute holding the receive count.
	sysReceiveCount = "ApproximateReceiveCount"
	sysGroupID      = "MessageGroupId"
	sysSent         = "SentTimestamp"
)

// meta is what the driver reads out of a received message.
type meta struct {
	id       string
	job      string
	pipeline string
	headers  map[string][]string
	body     []byte
	priority int64
	attempt  int // base + ApproximateReceiveCount
	base     int // attempts spent before this copy was sent
	autoAck  bool
	group    string
	count    int       // ApproximateReceiveCount (1 when absent)
	due      time.Time // attrDue; zero when absent
	sent     time.Time // SentTimestamp; zero when absent
	delayed  bool      // rr_delay says the send was delayed
}

// readMessage decodes m. queue is the job name of foreign messages (no rr
// attributes); priority the pipeline default.
func readMessage(m types.Message, queue string, priority int64) meta {
	md := meta{
		id:       aws.ToString(m.MessageId),
		job:      queue,
		priority: priority,
		headers:  map[string][]string{},
		body:     []byte(aws.ToString(m.Body)),
		group:    m.Attributes[sysGroupID],
	}
	// RoadRunner's own producers may write some rr_* attributes as
	// Number or Binary; all of them carry text.
	str := func(k string) (string, bool) {
		v, ok := m.MessageAttributes[k]
		switch {
		case !ok:
			return "", false
		case v.StringValue != nil:
			return *v.StringValue, true
		case v.BinaryValue != nil:
			return string(v.BinaryValue), true
		}
		return "", false
	}
	if v, ok := str(attrID); ok && v != "" {
		md.id = v
	}
	if v, ok := str(attrJob); ok && v != "" {
		md.job = v
	}
	md.pipeline, _ = str(attrPipeline)
	if v, ok := str(attrHeaders); ok {
		var h map[string][]string
		if json.Unmarshal([]byte(v), &h) == nil {
			for k, vs := range h {
				md.headers[k] = vs
			}
		}
	}
	if v, ok := str(attrPriority); ok {
		if p, err := strconv.ParseInt(v, 10, 64); err == nil && p > 0 {
			md.priority = p
		}
	}
	if v, ok := str(attrAutoAck); ok {
		md.autoAck, _ = strconv.ParseBool(v)
	}
	if v, ok := str(attrDue); ok {
		md.due = parseDue(v)
	}
	if v, ok := str(attrDelay); ok {
		n, err := strconv.Atoi(v)
		md.delayed = err != nil || n > 0
	}
	if ms, err := strconv.ParseInt(m.Attributes[sysSent], 10, 64); err == nil && ms > 0 {
		md.sent = time.UnixMilli(ms)
	}
	if v, ok := str(attrAttempts); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			md.base = n
		}
	}
	switch v, _ := str(attrEncoding); v {
	case encodingBase64:
		if b, err := base64.StdEncoding.DecodeString(string(md.body)); err == nil {
			md.body = b
		}
	case encodingEmpty:
		md.body = []byte{}
	}
	// String attributes of foreign producers become headers.
	for k, v := range m.MessageAttributes {
		if isReserved(k) || v.StringValue == nil {
			continue
		}
		if _, ok := md.headers[k]; !ok {
			md.headers[k] = []string{*v.StringValue}
		}
	}
	count := 1
	if n, err := strconv.Atoi(m.Attributes[sysReceiveCount]); err == nil && n > 0 {
		count = n
	}
	md.count = count
	md.attempt = md.base + count
	return md
}

// isReserved reports whether a message attribute is driver metadata.
func isReserved(k string) bool {
	switch k {
	case attrID, attrJob, attrPipeline, attrHeaders, attrPriority, attrAutoAck, attrAttempts, attrEncoding, attrDeadReason, attrDelay, attrDue:
		return true
	}
	return false
}

// outgoing is a message about to be sent: body and attributes.
type outgoing struct {
	body  string
	attrs map[string]types.MessageAttributeValue
}

// size approximates what SQS counts against the message size limit.
func (o outgoing) size() int {
	n := len(o.body)
	for k, v := range o.attrs {
		n += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

// stringAttr is a String message attribute.
func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// encodeBody returns the body as SQS accepts it and the rr_encoding it
// needs: unchanged ("") when it is non-empty valid UTF-8 made of
// characters SQS allows, a placeholder for an empty payload, else base64.
func encodeBody(b []byte) (string, string) {
	switch {
	case len(b) == 0:
		return emptyBody, encodingEmpty
	case validBody(b):
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), encodingBase64
}

// validBody reports whether b is UTF-8 made only of the characters SQS
// accepts in a message body: #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
// #x10000-#x10FFFF.
func validBody(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		switch {
		case r == 0x9, r == 0xA, r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
		b = b[n:]
	}
	return true
}

// jobMessage builds the message for a published job.
func jobMessage(id, name, pipeline string, payload []byte, headers map[string][]string, priority int64, autoAck bool, attempts int) outgoing {
	body, encoding := encodeBody(payload)
	attrs := map[string]types.MessageAttributeValue{
		attrID:       stringAttr(id),
		attrPriority: stringAttr(strconv.FormatInt(priority, 10)),
	}
	if name != "" {
		attrs[attrJob] = stringAttr(name)
	}
	if pipeline != "" {
		attrs[attrPipeline] = stringAttr(pipeline)
	}
	if len(headers) > 0 {
		h, _ := json.Marshal(headers) // map[string][]string always marshals
		attrs[attrHeaders] = stringAttr(string(h))
	}
	if autoAck {
		attrs[attrAutoAck] = stringAttr("true")
	}
	if attempts > 0 {
		attrs[attrAttempts] = stringAttr(strconv.Itoa(attempts))
	}
	if encoding != "" {
		attrs[attrEncoding] = stringAttr(encoding)
	}
	return outgoing{body: body, attrs: attrs}
}

// copyMessage builds a copy of a received message: its body and
// attributes (foreign attributes kept as far as SQS's limit of ten
// allows), the job identity, the given headers and attempt count, and
// the extra attributes (attrDue among them: see dueAttr).
func copyMessage(m types.Message, md meta, headers map[string][]string, attempts int, extra map[string]string) outgoing {
	out := jobMessage(md.id, md.job, md.pipeline, md.body, headers, md.priority, false, attempts)
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		if len(out.attrs) < maxAttributes {
			out.attrs[k] = stringAttr(extra[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.MessageAttributes)) {
		if isReserved(k) || len(out.attrs) >= maxAttributes {
			continue
		}
		if _, dup := headers[k]; dup {
			continue
		}
		out.attrs[k] = m.MessageAttributes[k]
	}
	return out
}

// dedupID returns a MessageDeduplicationId for id: id itself when SQS
// accepts it (1..128 characters of a-z A-Z 0-9 and punctuation), else its
// SHA-256.
func dedupID(id string) string {
	ok := len(id) > 0 && len(id) <= 128
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= '!' && c <= '~'
	}
	if ok {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// seconds rounds d up to whole seconds (a delay never ends early).
func seconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	return int32((d + time.Second - 1) / time.Second)
}

// sameHeaders reports whether merging over into base changes nothing.
func sameHeaders(base, over map[string][]string) bool {
	for k, v := range over {
		if b, ok := base[k]; !ok || !slices.Equal(b, v) {
			return false
		}
	}
	return true
}
