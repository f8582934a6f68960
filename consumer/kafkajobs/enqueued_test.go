package kafkajobs

import (
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestDeliveryEnqueuedIsTheRecordTime: a delivery is dated by its record's
// timestamp, the time of its publish (to the millisecond), so the
// pipeline can report the queue wait.
func TestDeliveryEnqueuedIsTheRecordTime(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	before := time.Now().Truncate(time.Millisecond)
	publish(t, d, consumer.Job{ID: "job-1", Name: "x", Payload: []byte("y")})
	after := time.Now()
	dl := receive(t, d)
	if dl.Enqueued.Before(before) || dl.Enqueued.After(after) {
		t.Fatalf("Enqueued = %v, want within the publish [%v, %v]", dl.Enqueued, before, after)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
}

// TestDelayedDeliveryEnqueuedIsTheEndOfItsDelay: a job published with a
// delay is dated from the end of its delay, not its publish.
func TestDelayedDeliveryEnqueuedIsTheEndOfItsDelay(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	before := time.Now()
	publish(t, d, consumer.Job{ID: "job-1", Name: "x", Payload: []byte("y"), Delay: 300 * time.Millisecond})
	dl := receive(t, d)
	if dl.Enqueued.Before(before.Add(300*time.Millisecond).Truncate(time.Millisecond)) || dl.Enqueued.After(time.Now()) {
		t.Fatalf("Enqueued = %v, want the end of the delay (after %v)", dl.Enqueued, before.Add(300*time.Millisecond))
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
}
