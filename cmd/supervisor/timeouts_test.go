package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// stuckJobs blocks every call until its ctx ends.
type stuckJobs struct{ rpc.Jobs }

func (stuckJobs) Push(ctx context.Context, _ []consumer.Job) error {
	<-ctx.Done()
	return ctx.Err()
}

func (stuckJobs) Destroy(ctx context.Context, _ []string) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestWithTimeoutBoundsEveryCall(t *testing.T) {
	j := withTimeout(stuckJobs{}, 50*time.Millisecond)
	start := time.Now()
	if err := j.Push(context.Background(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Push = %v, want a deadline error", err)
	}
	if _, err := j.Destroy(context.Background(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Destroy = %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("bounded calls took %s", took)
	}
	if withTimeout(stuckJobs{}, 0) != (stuckJobs{}) {
		t.Fatalf("a zero timeout must leave the calls unbounded")
	}
}
