package frame

import (
	"strconv"
	"unicode/utf8"
)

// AttemptHeader is the job header that tells the worker which delivery of
// the job it runs: "1" the first time. The supervisor sets it in every job
// context and ignores a value a worker sends back.
const AttemptHeader = "x-attempt"

// ContextMembers adds members of a driver's own to a job context (Kafka's
// topic, partition and offset).
type ContextMembers interface {
	// AppendContext appends the members, each as `,"name":value`, to b
	// and returns the extended slice.
	AppendContext(b []byte) []byte
}

// JobMeta is what the job context of one job says, besides its body.
type JobMeta struct {
	ID, Job, Driver, Queue, Pipeline string
	// Headers are the job's headers; AttemptHeader among them is replaced
	// by Attempt.
	Headers map[string][]string
	Attempt int
	// Extra, when not nil, adds the driver's members after "pipeline".
	Extra ContextMembers
}

// AppendJobContext appends the job context JSON of m to b[:0] (growing it
// as needed) and returns it: what RoadRunner's drivers send
// (roadrunner-protocol.md §3.1), decoding into JobContext. Queue is left
// out when empty. m is not modified.
//
// It writes the JSON by hand into one buffer: this runs once per job, and
// encoding/json with a copied header map was the pipeline's largest cost.
// TestJobContextMatchesEncodingJSON pins it to JobContext's encoding.
func AppendJobContext(b []byte, m *JobMeta) []byte {
	n := 96 + len(m.ID) + len(m.Job) + len(m.Driver) + len(m.Queue) + len(m.Pipeline)
	for k, vs := range m.Headers {
		n += len(k) + 6
		for _, v := range vs {
			n += len(v) + 3
		}
	}
	b = b[:0]
	if cap(b) < n {
		b = make([]byte, 0, max(n, 2*cap(b)))
	}
	b = append(b, `{"id":`...)
	b = AppendJSONString(b, m.ID)
	b = append(b, `,"job":`...)
	b = AppendJSONString(b, m.Job)
	b = append(b, `,"driver":`...)
	b = AppendJSONString(b, m.Driver)
	if m.Queue != "" {
		b = append(b, `,"queue":`...)
		b = AppendJSONString(b, m.Queue)
	}
	b = append(b, `,"headers":{`...)
	for k, vs := range m.Headers {
		if k == AttemptHeader {
			continue
		}
		b = AppendJSONString(b, k)
		if vs == nil {
			b = append(b, ":null,"...)
			continue
		}
		b = append(b, ":["...)
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, v)
		}
		b = append(b, "],"...)
	}
	b = append(b, `"`+AttemptHeader+`":["`...)
	b = strconv.AppendInt(b, int64(m.Attempt), 10)
	b = append(b, `"]},"pipeline":`...)
	b = AppendJSONString(b, m.Pipeline)
	if m.Extra != nil {
		b = m.Extra.AppendContext(b)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Control characters are
// escaped, invalid UTF-8 becomes U+FFFD (as encoding/json does), and
// U+2028/U+2029 are escaped so the output is also valid JavaScript.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
