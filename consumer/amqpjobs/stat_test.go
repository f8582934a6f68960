package amqpjobs

import (
	"context"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestStatCountsDelayedMessages: Delayed is the number of messages waiting
// in the pipeline's delay queues, from pushes with a delay and from
// retries with a delay, counted on the broker; Ready the queue's own.
func TestStatCountsDelayedMessages(t *testing.T) {
	cfg := testConfig(t, 30*time.Second, 45*time.Second)
	d := open(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := d.Stat(ctx)
	if err != nil || st.Delayed != 0 || st.Ready != 0 {
		t.Fatalf("fresh Stat = %+v, %v", st, err)
	}

	// One job runs and is retried in 30s: it waits in a delay queue.
	publish(t, d, consumer.Job{ID: "retried", Name: "Test", Payload: []byte("r")})
	settle(t, recv(t, d), consumer.Outcome{Action: consumer.Retry, Delay: 30 * time.Second})
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	// Three pushed with a delay (two delay queues), three ready.
	jobs := numbered("now", 3)
	for i, delay := range []time.Duration{30 * time.Second, 30 * time.Second, 45 * time.Second} {
		jobs = append(jobs, consumer.Job{ID: "later-" + string(rune('a'+i)), Name: "Test", Payload: []byte("l"), Delay: delay})
	}
	publish(t, d, jobs...)

	st, err = d.Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Delayed != 4 || st.Ready != 3 || st.Active != 0 || st.Consuming {
		t.Errorf("Stat = %+v, want Delayed 4 (3 pushed with a delay + 1 retry), Ready 3", st)
	}
}

// TestDelayQueuesAreForgottenAfterTheirTTL: a delay queue is counted only
// while messages published to it may still wait there.
func TestDelayQueuesAreForgottenAfterTheirTTL(t *testing.T) {
	var q delayQueues
	t0 := time.Unix(1000, 0)
	q.add("a", 10*time.Second, t0)
	q.add("b", time.Minute, t0)
	q.add("a", 10*time.Second, t0.Add(20*time.Second))
	if got := q.inUse(t0.Add(30 * time.Second)); len(got) != 2 {
		t.Fatalf("in use at +30s: %v", got)
	}
	if got := q.inUse(t0.Add(36 * time.Second)); len(got) != 1 || got[0] != "b" {
		t.Fatalf("in use at +36s: %v, want [b]", got)
	}
	q.forget("b")
	if got := q.inUse(t0); len(got) != 0 {
		t.Fatalf("after forget: %v", got)
	}
}
