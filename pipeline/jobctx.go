package pipeline

import (
	"strconv"
	"unicode/utf8"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
)

// payload builds the job frame for d: the context JSON and the body
// unchanged. The context decodes into frame.JobContext with the fields
// RoadRunner's drivers send (roadrunner-protocol.md §3.1); its headers are
// d.Headers plus AttemptHeader set to d.Attempt (replacing any value the
// job carried). d is not modified.
//
// It writes the JSON by hand into one buffer: this runs once per job and
// encoding/json with a copied header map was the pipeline's largest cost.
// TestPayloadMatchesEncodingJSON pins it to frame.JobContext's encoding.
func payload(d *consumer.Delivery) frame.Payload {
	return appendPayload(nil, d)
}

// appendPayload is payload writing the context JSON into buf[:0], grown
// as needed: each concurrency slot reuses one buffer for all its jobs
// (the Executor does not retain the payload after Exec returns).
func appendPayload(buf []byte, d *consumer.Delivery) frame.Payload {
	n := 96 + len(d.ID) + len(d.Job) + len(d.Driver) + len(d.Queue) + len(d.Pipeline) + len(d.Topic)
	for k, vs := range d.Headers {
		n += len(k) + 6
		for _, v := range vs {
			n += len(v) + 3
		}
	}
	b := buf[:0]
	if cap(b) < n {
		b = make([]byte, 0, max(n, 2*cap(b)))
	}
	b = append(b, `{"id":`...)
	b = appendString(b, d.ID)
	b = append(b, `,"job":`...)
	b = appendString(b, d.Job)
	b = append(b, `,"driver":`...)
	b = appendString(b, d.Driver)
	if d.Queue != "" {
		b = append(b, `,"queue":`...)
		b = appendString(b, d.Queue)
	}
	b = append(b, `,"headers":{`...)
	for k, vs := range d.Headers {
		if k == AttemptHeader {
			continue
		}
		b = appendString(b, k)
		if vs == nil {
			b = append(b, ":null,"...)
			continue
		}
		b = append(b, ":["...)
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, v)
		}
		b = append(b, "],"...)
	}
	b = append(b, `"`+AttemptHeader+`":["`...)
	b = strconv.AppendInt(b, int64(d.Attempt), 10)
	b = append(b, `"]},"pipeline":`...)
	b = appendString(b, d.Pipeline)
	if d.Topic != "" {
		b = append(b, `,"topic":`...)
		b = appendString(b, d.Topic)
		b = append(b, `,"partition":`...)
		b = strconv.AppendInt(b, int64(d.Partition), 10)
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, d.Offset, 10)
	}
	b = append(b, '}')
	return frame.Payload{Context: b, Body: d.Body}
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Control characters are
// escaped, invalid UTF-8 becomes U+FFFD (as encoding/json does), and
// U+2028/U+2029 are escaped so the output is also valid JavaScript.
func appendString(b []byte, s string) []byte {
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
