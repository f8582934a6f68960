package amqpjobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// heldConfig is a pipeline with prefetch 100: up to 24 acks are held.
func heldConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Prefetch = 100
	return cfg
}

// receiveN receives n deliveries.
func receiveN(t *testing.T, d *Driver, n int) []*consumer.Delivery {
	t.Helper()
	out := make([]*consumer.Delivery, n)
	for i := range out {
		out[i] = recv(t, d)
	}
	return out
}

// nothingHandedOut wants Receive to hand out nothing for a while.
func nothingHandedOut(t *testing.T, d *Driver, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if del, err := d.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive handed out %+v (err %v), want nothing", del, err)
	}
}

// TestHeldAcksAreWrittenWithoutMoreWork: acks held for a joint write reach
// the broker by themselves (ackDelay), with no further Receive: once they
// are written, a dead connection puts nothing back in the queue.
func TestHeldAcksAreWrittenWithoutMoreWork(t *testing.T) {
	cfg := heldConfig(t)
	d := open(t, cfg, "")
	publish(t, d, numbered("w", 20)...)
	for _, del := range receiveN(t, d, 20) {
		settle(t, del, consumer.Outcome{Action: consumer.Ack})
	}
	old := d.current()
	waitFor(t, 5*time.Second, "the held acks to be written", func() bool { return old.acks.held.Load() == 0 })
	_ = old.conn.Close()
	waitFor(t, 10*time.Second, "a new session", func() bool { s := d.current(); return s != nil && s != old })
	if n := queueCount(t, cfg.Queue); n != 0 {
		t.Fatalf("%d acked messages back in the queue after the connection closed", n)
	}
}

// TestHeldAcksLostWithTheChannelDoNotRunAgain: acks still held when the
// connection dies never reach the broker, which redelivers those jobs;
// the driver recognises them as done and acks them without handing them
// out. A held ack count that reaches a quarter of the prefetch is written
// at once.
func TestHeldAcksLostWithTheChannelDoNotRunAgain(t *testing.T) {
	cfg := heldConfig(t)
	d := open(t, cfg, "")
	d.ackDelay = time.Hour // only the limit and Close write held acks
	publish(t, d, numbered("l", 30)...)
	for _, del := range receiveN(t, d, 30) {
		settle(t, del, consumer.Outcome{Action: consumer.Ack})
	}
	old := d.current()
	if n := int(old.acks.held.Load()); n != 30-ackBatch(cfg.Prefetch) {
		t.Fatalf("%d acks held after 30 acks, want %d (the first %d written at the limit)", n, 30-ackBatch(cfg.Prefetch), ackBatch(cfg.Prefetch))
	}
	_ = old.conn.Close()
	waitFor(t, 10*time.Second, "a new session", func() bool { s := d.current(); return s != nil && s != old })
	nothingHandedOut(t, d, time.Second)
	waitFor(t, 5*time.Second, "the redelivered duplicates acked", func() bool {
		s := d.current()
		return s != nil && s.acks.held.Load() == 0 && queueCount(t, cfg.Queue) == 0 && d.outstanding.Load() == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := queueCount(t, cfg.Queue); n != 0 {
		t.Fatalf("%d messages back in the queue after Close", n)
	}
}

// TestHeldAckAboveARunningJob: acks of later deliveries are written while
// an earlier one still runs (a multiple ack must not cover it), and that
// one can still be retried in place: the broker never closes the channel
// over a settlement, and nothing is left once all are done.
func TestHeldAckAboveARunningJob(t *testing.T) {
	cfg := heldConfig(t)
	d := open(t, cfg, "")
	publish(t, d, numbered("r", 3)...)
	dels := receiveN(t, d, 3)
	settle(t, dels[1], consumer.Outcome{Action: consumer.Ack})
	settle(t, dels[2], consumer.Outcome{Action: consumer.Ack})
	s := d.current()
	waitFor(t, 5*time.Second, "the held acks to be written", func() bool { return s.acks.held.Load() == 0 })
	settle(t, dels[0], consumer.Outcome{Action: consumer.Retry})
	again := recv(t, d)
	if again.ID != dels[0].ID || again.Attempt != 2 {
		t.Fatalf("after the retry got %q attempt %d, want %q attempt 2", again.ID, again.Attempt, dels[0].ID)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
	waitFor(t, 5*time.Second, "the last ack to be written", func() bool { return s.acks.held.Load() == 0 })
	if cur := d.current(); cur != s || s.dead() {
		t.Fatal("the channel was closed over a settlement")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := queueCount(t, cfg.Queue); n != 0 {
		t.Fatalf("%d messages back in the queue after Close", n)
	}
}

// TestHeldAcksAboveARunningJobAreCarried: a flush keeps the acks above a
// still running job held, for up to ackDelay from the first flush that
// did, the first flush after writes them one by one; either way the
// broker gets every ack once, the running job can still be acked, and
// nothing is left.
func TestHeldAcksAboveARunningJobAreCarried(t *testing.T) {
	for _, finishFirst := range []bool{true, false} {
		cfg := heldConfig(t)
		d := open(t, cfg, "")
		d.ackDelay = time.Hour // flushes only where the test says
		publish(t, d, numbered("c", 4)...)
		dels := receiveN(t, d, 4)
		for _, i := range []int{0, 2, 3} {
			settle(t, dels[i], consumer.Outcome{Action: consumer.Ack})
		}
		s := d.current()
		if err := s.flush(false); err != nil {
			t.Fatal(err)
		}
		if n := s.acks.held.Load(); n != 2 {
			t.Fatalf("%d acks held after the first flush, want the 2 above the running job", n)
		}
		if !finishFirst {
			s.mu.Lock()
			s.acks.delay = 0 // the carrying time is over
			s.mu.Unlock()
			if err := s.flush(false); err != nil {
				t.Fatal(err)
			}
			if n := s.acks.held.Load(); n != 0 {
				t.Fatalf("%d acks held after the second flush, want 0", n)
			}
		}
		settle(t, dels[1], consumer.Outcome{Action: consumer.Ack})
		if err := s.flush(false); err != nil {
			t.Fatal(err)
		}
		if n := s.acks.held.Load(); n != 0 {
			t.Fatalf("%d acks held after the last flush, want 0", n)
		}
		if cur := d.current(); cur != s || s.dead() {
			t.Fatal("the channel was closed over a settlement")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := d.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		cancel()
		if n := queueCount(t, cfg.Queue); n != 0 {
			t.Fatalf("%d messages back in the queue after Close: an ack was lost", n)
		}
	}
}
