package boltjobs_test

import (
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
)

// within reports whether at lies in [from, to].
func within(at, from, to time.Time) bool { return !at.Before(from) && !at.After(to) }

// A delivery's Enqueued is its push; a delayed job's is its due time; a
// job handed back without a delay keeps its time, one retried with a
// delay is dated from the end of that delay. OldestReady is the oldest
// waiting job's push, and reports none when nothing waits.
func TestEnqueuedAndOldestReady(t *testing.T) {
	const delay = 200 * time.Millisecond
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "enq", tempConfig(t))
	if at, ok := q.OldestReady(); ok {
		t.Fatalf("OldestReady of an empty queue = %v, true", at)
	}
	before := time.Now()
	publish(t, q, consumer.Job{ID: "first"})
	after := time.Now()
	publish(t, q, consumer.Job{ID: "second"})
	if at, ok := q.OldestReady(); !ok || !within(at, before, after) {
		t.Errorf("OldestReady = %v, %v; want the first push, within [%v, %v]", at, ok, before, after)
	}
	d := receive(t, q)
	if d.ID != "first" || !within(d.Enqueued, before, after) {
		t.Errorf("first delivery %q Enqueued %v, want first within [%v, %v]", d.ID, d.Enqueued, before, after)
	}
	pushed := d.Enqueued
	settle(t, d, consumer.Outcome{Action: consumer.Retry})
	d = receive(t, q)
	if d.ID != "first" || !d.Enqueued.Equal(pushed) {
		t.Errorf("after Retry(0): %q Enqueued %v, want first keeping %v", d.ID, d.Enqueued, pushed)
	}
	retryFrom := time.Now()
	settle(t, d, consumer.Outcome{Action: consumer.Retry, Delay: delay})
	retryTo := time.Now()
	settle(t, receive(t, q), consumer.Outcome{Action: consumer.Ack}) // second
	if at, ok := q.OldestReady(); ok {
		t.Errorf("OldestReady with only a delayed job = %v, true", at)
	}
	d = receive(t, q)
	if d.ID != "first" || !within(d.Enqueued, retryFrom.Add(delay), retryTo.Add(delay)) {
		t.Errorf("after Retry(%v): %q Enqueued %v, want first within [%v, %v]", delay, d.ID, d.Enqueued, retryFrom.Add(delay), retryTo.Add(delay))
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})

	before = time.Now()
	publish(t, q, consumer.Job{ID: "delayed", Delay: delay})
	after = time.Now()
	d = receive(t, q)
	if !within(d.Enqueued, before.Add(delay), after.Add(delay)) {
		t.Errorf("delayed job Enqueued %v, want its due time, within [%v, %v]", d.Enqueued, before.Add(delay), after.Add(delay))
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
	if at, ok := q.OldestReady(); ok {
		t.Errorf("OldestReady of an emptied queue = %v, true", at)
	}
}

// Enqueue times are kept in the file: after a restart the oldest ready
// job's age still counts from its original push, and a delayed job is
// still dated from its original deadline.
func TestEnqueuedAcrossReopen(t *testing.T) {
	const delay = 300 * time.Millisecond
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "enq", cfg)
	before := time.Now()
	publish(t, q, consumer.Job{ID: "plain"}, consumer.Job{ID: "delayed", Delay: delay})
	after := time.Now()
	pushed, ok := q.OldestReady()
	if !ok || !within(pushed, before, after) {
		t.Fatalf("OldestReady = %v, %v; want within [%v, %v]", pushed, ok, before, after)
	}
	// The plain job is handed out and dies with the process.
	if d := receive(t, q); d.ID != "plain" {
		t.Fatalf("got %q, want plain", d.ID)
	}
	q = reopen(t, q, cfg)
	if at, ok := q.OldestReady(); !ok || !at.Equal(pushed) {
		t.Errorf("OldestReady after reopen = %v, %v; want the original push %v", at, ok, pushed)
	}
	d := receive(t, q)
	if d.ID != "plain" || !d.Enqueued.Equal(pushed) || d.Attempt != 2 {
		t.Errorf("after reopen: %q Enqueued %v attempt %d, want plain, %v, attempt 2 (it was running)", d.ID, d.Enqueued, d.Attempt, pushed)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
	q = reopen(t, q, cfg)
	d = receive(t, q)
	if d.ID != "delayed" || !within(d.Enqueued, before.Add(delay), after.Add(delay)) {
		t.Errorf("after reopen: %q Enqueued %v, want delayed with its original due time, within [%v, %v]", d.ID, d.Enqueued, before.Add(delay), after.Add(delay))
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
}
