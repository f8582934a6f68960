package kafkajobs

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record headers written and read by the driver.
const (
	hdrID         = "rr_id"
	hdrJob        = "rr_job"
	hdrPipeline   = "rr_pipeline"
	hdrPriority   = "rr_priority"
	hdrAttempt    = "rr_attempt"
	hdrXAttempt   = "x-attempt"
	hdrDelayUntil = "rr_delay_until"
	hdrAutoAck    = "rr_auto_ack"
	// Written on dead-lettered copies.
	hdrDeadReason      = "rr_dead_reason"
	hdrSourceTopic     = "rr_source_topic"
	hdrSourcePartition = "rr_source_partition"
	hdrSourceOffset    = "rr_source_offset"
)

// isReserved reports whether a header is driver metadata rather than a
// user header: such headers are not copied from a job's headers into a
// record, nor from a record into Delivery.Headers.
func isReserved(key string) bool {
	switch key {
	case hdrID, hdrJob, hdrPipeline, hdrPriority, hdrAttempt, hdrXAttempt, hdrDelayUntil, hdrAutoAck:
		return true
	}
	return false
}

// appendUserHeaders adds one record header per value of every user header.
func appendUserHeaders(dst []kgo.RecordHeader, h map[string][]string) []kgo.RecordHeader {
	for k, vs := range h {
		if isReserved(k) {
			continue
		}
		for _, v := range vs {
			dst = append(dst, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	return dst
}

// meta is what the driver reads out of a consumed record.
type meta struct {
	id         string
	job        string
	priority   int64
	attempt    int
	delayUntil time.Time
	autoAck    bool
	headers    map[string][]string // user headers; nil when there are none
}

// readRecord decodes r's headers. jobHeader is the fallback header for the
// job name; priority the pipeline default.
func readRecord(r *kgo.Record, jobHeader string, priority int64) meta {
	m := meta{priority: priority, attempt: 1}
	var fallbackJob string
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case hdrID:
			m.id = v
		case hdrJob:
			m.job = v
		case hdrPriority:
			if p, err := strconv.ParseInt(v, 10, 64); err == nil {
				m.priority = p
			}
		case hdrAttempt, hdrXAttempt:
			if a, err := strconv.Atoi(v); err == nil && a >= 1 && (h.Key == hdrAttempt || m.attempt == 1) {
				m.attempt = a
			}
		case hdrAutoAck:
			m.autoAck = v == "true"
		case hdrDelayUntil:
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				m.delayUntil = time.UnixMilli(ms)
			}
		}
		if h.Key == jobHeader {
			fallbackJob = v
		}
		if !isReserved(h.Key) {
			if m.headers == nil {
				m.headers = make(map[string][]string)
			}
			m.headers[h.Key] = append(m.headers[h.Key], v)
		}
	}
	if m.id == "" && m.job != "" && len(r.Key) > 0 {
		// Written by RoadRunner's kafka driver: rr_job but no rr_id, the
		// job id is the record key.
		m.id = string(r.Key)
	}
	if m.id == "" {
		m.id = fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
	}
	if m.job == "" {
		m.job = fallbackJob
	}
	if m.job == "" {
		m.job = r.Topic
	}
	return m
}

// copyRecord builds a record for a retried or dead-lettered copy of the
// delivery e: same key, value and id, the given user headers, the attempt
// number and, for retries, the time before which it must not run.
func copyRecord(topic string, e *entry, headers map[string][]string, attempt int, notBefore time.Time, extra ...kgo.RecordHeader) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: e.rec.Key, Value: e.rec.Value}
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: hdrID, Value: []byte(e.meta.id)},
		kgo.RecordHeader{Key: hdrJob, Value: []byte(e.meta.job)},
		kgo.RecordHeader{Key: hdrPriority, Value: []byte(strconv.FormatInt(e.meta.priority, 10))},
		kgo.RecordHeader{Key: hdrAttempt, Value: []byte(strconv.Itoa(attempt))},
	)
	for _, h := range e.rec.Headers {
		if h.Key == hdrPipeline {
			r.Headers = append(r.Headers, h)
		}
	}
	if !notBefore.IsZero() {
		r.Headers = append(r.Headers, delayHeader(notBefore))
	}
	r.Headers = append(r.Headers, extra...)
	r.Headers = appendUserHeaders(r.Headers, headers)
	return r
}

// delayHeader is the rr_delay_until header for t, rounded up to the next
// millisecond so that the record never runs early.
func delayHeader(t time.Time) kgo.RecordHeader {
	ms := (t.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	return kgo.RecordHeader{Key: hdrDelayUntil, Value: []byte(strconv.FormatInt(ms, 10))}
}
