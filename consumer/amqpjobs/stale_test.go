package amqpjobs

import (
	"errors"
	"net"
	"syscall"
	"testing"

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
