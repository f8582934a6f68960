package memjobs

import (
	"context"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestReceiveReadyPassesTheBaton: with a Receive blocked, a batch that
// leaves jobs ready wakes it, and leaves it one job; a batch that takes
// the last job wakes nobody.
func TestReceiveReadyPassesTheBaton(t *testing.T) {
	q := New("q", Config{}, nil)
	if err := q.Publish(context.Background(), make([]consumer.Job, 5)); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	q.waiters = 1 // as if a Receive were blocked, its wake-up already used
	q.mu.Unlock()
	select {
	case <-q.sig:
		t.Fatal("Publish woke a Receive while none was blocked")
	default:
	}

	got := q.ReceiveReady(nil, 2)
	if len(got) != 2 {
		t.Fatalf("got %d deliveries, want 2", len(got))
	}
	select {
	case <-q.sig:
	default:
		t.Fatal("3 jobs still ready and the blocked Receive was not woken")
	}
	// One job is left for the blocked Receive.
	got = q.ReceiveReady(got, 10)
	if len(got) != 4 {
		t.Fatalf("got %d deliveries, want 4: one stays for the waiting Receive", len(got))
	}
	select {
	case <-q.sig:
	default:
		t.Fatal("a job left for the blocked Receive and it was not woken")
	}
	q.mu.Lock()
	q.waiters = 0
	q.mu.Unlock()
	got = q.ReceiveReady(got, 10)
	if len(got) != 5 {
		t.Fatalf("got %d deliveries, want 5", len(got))
	}
	select {
	case <-q.sig:
		t.Fatal("woke a Receive with nothing left for it")
	default:
	}
	for _, d := range got {
		if err := d.Settle(context.Background(), consumer.Outcome{Action: consumer.Ack}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
