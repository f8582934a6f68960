package amqpjobs

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// A settle write that failed on the connection is stale (the broker
// requeues the delivery) even while the session still looks alive; any
// other failure is not.
func TestStaleOrConnectionWriteErrors(t *testing.T) {
	live := &session{done: make(chan struct{})}
	reset := &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	if err := staleOr(live, "basic.ack", reset); !errors.Is(err, consumer.ErrStaleDelivery) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection reset: %v, want ErrStaleDelivery wrapping the cause", err)
	}
	if err := staleOr(live, "basic.ack", net.ErrClosed); !errors.Is(err, consumer.ErrStaleDelivery) {
		t.Errorf("closed connection: %v, want ErrStaleDelivery", err)
	}
	other := errors.New("frame too large")
	if err := staleOr(live, "basic.ack", other); errors.Is(err, consumer.ErrStaleDelivery) || !errors.Is(err, other) {
		t.Errorf("other error: %v, want it wrapped, not stale", err)
	}
	dead := &session{done: make(chan struct{})}
	close(dead.done)
	if err := staleOr(dead, "basic.nack", other); !errors.Is(err, consumer.ErrStaleDelivery) {
		t.Errorf("dead session: %v, want ErrStaleDelivery", err)
	}
}

// A delivery read from the feed of a dead session (amqp091 may offer what
// it had buffered after the channel closed) is not handed out: the broker
// redelivers it, and that redelivery keeps the attempt it had, since the
// job never ran.
func TestTakeDropsDeliveriesOfADeadSession(t *testing.T) {
	d := &Driver{
		name:       "p",
		closing:    make(chan struct{}),
		attempts:   newAttemptMemo(10),
		acked:      newAttemptMemo(10),
		settledSig: make(chan struct{}, 1),
	}
	dead := &session{gen: 1, done: make(chan struct{})}
	close(dead.done)
	msgs := make(chan amqp.Delivery, 1)
	msgs <- amqp.Delivery{DeliveryTag: 7, MessageId: "job-1", Headers: amqp.Table{hdrID: "job-1", hdrJob: "J", hdrAttempt: int64(1)}}
	f := &feed{s: dead, msgs: msgs, stop: make(chan struct{})}
	in, ok, err := d.take(context.Background(), f, make(chan struct{}))
	if err != nil || ok {
		t.Fatalf("take from a dead session = %+v, %v, %v; want nothing handed out", in, ok, err)
	}
	if n := d.outstanding.Load(); n != 0 {
		t.Errorf("%d deliveries counted outstanding, want 0", n)
	}

	live := &session{gen: 2, done: make(chan struct{})}
	del := d.deliver(inbound{s: live, m: amqp.Delivery{DeliveryTag: 1, Redelivered: true, MessageId: "job-1",
		Headers: amqp.Table{hdrID: "job-1", hdrJob: "J", hdrAttempt: int64(1)}}})
	if del == nil || del.ID != "job-1" || del.Attempt != 1 {
		t.Fatalf("redelivery of the dropped job = %+v, want job-1 with attempt 1", del)
	}
}
