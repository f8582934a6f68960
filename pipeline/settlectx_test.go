package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestSettleCtxLikeWithTimeout(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")

	// Cancelled on return without anyone having asked for Done.
	c := newSettleCtx(parent, time.Now(), time.Hour)
	if c.Err() != nil {
		t.Fatalf("fresh ctx: Err = %v", c.Err())
	}
	if dl, ok := c.Deadline(); !ok || time.Until(dl) < 59*time.Minute {
		t.Errorf("Deadline = %v, %v", dl, ok)
	}
	if c.Value(ctxKey{}) != "v" {
		t.Errorf("Value = %v, want the parent's", c.Value(ctxKey{}))
	}
	c.cancel()
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after cancel")
	}
	if !errors.Is(c.Err(), context.Canceled) || !errors.Is(context.Cause(c), context.Canceled) {
		t.Errorf("after cancel: Err = %v, Cause = %v", c.Err(), context.Cause(c))
	}

	// Done asked first: the timer closes it at the deadline.
	c = newSettleCtx(parent, time.Now(), 20*time.Millisecond)
	done := c.Done()
	if c.Err() != nil {
		t.Fatalf("before the deadline: Err = %v", c.Err())
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed at the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Errorf("after the deadline: Err = %v", c.Err())
	}
	c.cancel()
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Errorf("cancel after the deadline changed Err to %v", c.Err())
	}

	// Nobody asked for Done: Err still reports the passed deadline, and a
	// later Done is closed.
	c = newSettleCtx(parent, time.Now(), time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for c.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v, want DeadlineExceeded", c.Err())
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Err reported the deadline")
	}

	// A context derived from it by a driver ends with it.
	c = newSettleCtx(parent, time.Now(), time.Hour)
	child, stop := context.WithCancel(c)
	defer stop()
	c.cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("derived context not cancelled")
	}
}
