package amqpjobs

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// within fails unless at lies in [from, to] (to the millisecond pv_due
// has).
func within(t testing.TB, what string, at, from, to time.Time) {
	t.Helper()
	if at.Before(from.Truncate(time.Millisecond)) || at.After(to) {
		t.Errorf("%s Enqueued = %v, want within [%v, %v]", what, at, from, to)
	}
}

// TestEnqueuedPushed: a job pushed with delay D is dated push time + D
// (when it became due), one without a delay its push time; the date is
// not among the headers the worker gets.
func TestEnqueuedPushed(t *testing.T) {
	t.Parallel()
	const delay = time.Second
	cfg := testConfig(t, delay)
	d := open(t, cfg, "")
	before := time.Now()
	publish(t, d, consumer.Job{ID: "late", Name: "T", Delay: delay})
	publish(t, d, consumer.Job{ID: "now", Name: "T"})
	after := time.Now()

	del := recv(t, d)
	if del.ID != "now" {
		t.Fatalf("first delivery %q, want the job without delay", del.ID)
	}
	within(t, "undelayed job", del.Enqueued, before, after)
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
	del = recv(t, d)
	within(t, "job delayed 1s", del.Enqueued, before.Add(delay), after.Add(delay))
	if _, ok := del.Headers[hdrDue]; ok {
		t.Errorf("%s is among the worker's headers: %v", hdrDue, del.Headers)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
}

// TestEnqueuedRetried: a copy sent back with a delay (Retry, Requeue) is
// dated its send time + the delay, one sent back without delay its send
// time, and a job requeued in place (Retry(0), back at its position)
// keeps its date.
func TestEnqueuedRetried(t *testing.T) {
	t.Parallel()
	const delay = time.Second
	cfg := testConfig(t, delay)
	d := open(t, cfg, "")
	publish(t, d, consumer.Job{ID: "r", Name: "T", Headers: map[string][]string{"h": {"1"}}})
	first := recv(t, d)

	settle(t, first, consumer.Outcome{Action: consumer.Retry})
	inPlace := recv(t, d)
	if inPlace.Attempt != 2 || !inPlace.Enqueued.Equal(first.Enqueued) {
		t.Errorf("requeued in place: attempt %d Enqueued %v, want 2 and the push's %v", inPlace.Attempt, inPlace.Enqueued, first.Enqueued)
	}

	before := time.Now()
	settle(t, inPlace, consumer.Outcome{Action: consumer.Retry, Delay: delay})
	after := time.Now()
	delayed := recv(t, d)
	if delayed.Attempt != 3 {
		t.Errorf("retried copy attempt %d, want 3", delayed.Attempt)
	}
	within(t, "copy retried after 1s", delayed.Enqueued, before.Add(delay), after.Add(delay))

	before = time.Now()
	settle(t, delayed, consumer.Outcome{Action: consumer.Requeue, Headers: map[string][]string{"h": {"2"}}})
	after = time.Now()
	requeued := recv(t, d)
	within(t, "copy requeued without delay", requeued.Enqueued, before, after)
	settle(t, requeued, consumer.Outcome{Action: consumer.Ack})
}

// TestEnqueuedForeign: a message another producer sent without pv_due is
// dated by its timestamp property when nothing says it was delayed
// (RoadRunner's rr_delay 0 included), and not dated (zero) with a
// delay (rr_delay, x-delay), without a timestamp, or after a
// dead-letter hop from another queue, which also voids our own pv_due.
func TestEnqueuedForeign(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	d := open(t, cfg, "")
	ts := time.Now().Add(-time.Minute).Truncate(time.Second)
	rr := func(delay int64) amqp.Table {
		// What RoadRunner's producer writes (its pack).
		return amqp.Table{hdrID: "rr-id", hdrJob: "App\\Job", hdrPipeline: "p", hdrHeaders: []byte("{}"),
			hdrDelay: delay, hdrPriority: int64(10), hdrAutoAck: false}
	}
	cases := []struct {
		name string
		pub  amqp.Publishing
		want time.Time
	}{
		{"plain with timestamp", amqp.Publishing{Timestamp: ts, Headers: amqp.Table{"foo": "bar"}}, ts},
		{"roadrunner push without delay", amqp.Publishing{Timestamp: ts, Headers: rr(0)}, ts},
		{"roadrunner push with rr_delay 5", amqp.Publishing{Timestamp: ts, Headers: rr(5)}, time.Time{}},
		{"x-delay", amqp.Publishing{Timestamp: ts, Headers: amqp.Table{hdrXDelay: int32(5000)}}, time.Time{}},
		{"no timestamp", amqp.Publishing{}, time.Time{}},
	}
	for _, c := range cases {
		c.pub.Body = []byte(c.name)
		publishRaw(t, cfg.Queue, c.pub)
	}
	for _, c := range cases {
		del := recv(t, d)
		if string(del.Body) != c.name {
			t.Fatalf("got %q, want %q", del.Body, c.name)
		}
		if !del.Enqueued.Equal(c.want) {
			t.Errorf("%s: Enqueued = %v, want %v", c.name, del.Enqueued, c.want)
		}
		settle(t, del, consumer.Outcome{Action: consumer.Ack})
	}

	// A job of another pipeline dead-lettered into this queue by the
	// broker: its pv_due dates the other queue's wait.
	src := testConfig(t)
	src.QueueHeaders = map[string]any{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": cfg.Queue}
	ds := open(t, src, "")
	publish(t, ds, consumer.Job{ID: "dlx", Name: "T"})
	settle(t, recv(t, ds), consumer.Outcome{Action: consumer.Dead, Reason: "bad"})
	del := recv(t, d)
	if del.ID != "dlx" || !del.Enqueued.IsZero() {
		t.Errorf("dead-lettered job %q: Enqueued = %v, want zero", del.ID, del.Enqueued)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
}

// TestEnqueuedOlderLayout: a message published with the due time in a
// pv_due header of its own (before it moved into pv_msg) is dated by it.
func TestEnqueuedOlderLayout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	d := open(t, cfg, "")
	due := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	publishRaw(t, cfg.Queue, amqp.Publishing{
		Timestamp: time.Now(),
		Headers: amqp.Table{hdrID: "old", hdrJob: "T", hdrAttempt: int64(1), hdrDue: due.UnixMilli(),
			hdrMsg: "0b3f5c8e-8d0e-4a57-9a51-6d1c0e2c1f00"},
	})
	del := recv(t, d)
	if del.ID != "old" || !del.Enqueued.Equal(due) {
		t.Errorf("job %q: Enqueued = %v, want %v", del.ID, del.Enqueued, due)
	}
	if del.Attempt != 1 || len(del.Headers) != 0 {
		t.Errorf("attempt %d, headers %v; want 1 and none", del.Attempt, del.Headers)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
}
