package memjobs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// countingQueue is a queue whose returns of memory are counted instead of
// run.
func countingQueue(t *testing.T) (*Queue, *atomic.Int32) {
	t.Helper()
	q := New("q", Config{Prefetch: 1 << 20}, nil)
	var n atomic.Int32
	q.freeOSMemory = func() { n.Add(1) }
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	return q, &n
}

// drain publishes jobs and acks every one of them.
func drain(t *testing.T, q *Queue, jobs []consumer.Job) {
	t.Helper()
	ctx := context.Background()
	if err := q.Publish(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	for left := len(jobs); left > 0; {
		ds := q.ReceiveReady(nil, min(512, left))
		if len(ds) == 0 {
			t.Fatalf("%d jobs left but none ready", left)
		}
		for _, d := range ds {
			if err := d.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); err != nil {
				t.Fatal(err)
			}
		}
		left -= len(ds)
	}
}

func waitCalls(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); n.Load() != want; {
		if time.Now().After(end) {
			t.Fatalf("memory returned %d times, want %d", n.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A queue emptied after a burst of many jobs, or of large payloads,
// returns the memory once; one emptied after a few small jobs schedules
// nothing, and jobs still queued hold the return back.
func TestMemoryReturnedOnceABurstDrained(t *testing.T) {
	q, calls := countingQueue(t)

	drain(t, q, make([]consumer.Job, 10))
	if q.release != nil {
		t.Fatal("a return of memory was scheduled after 10 jobs")
	}

	big := make([]consumer.Job, releaseAfterJobs)
	if err := q.Publish(context.Background(), []consumer.Job{{Name: "stays"}}); err != nil {
		t.Fatal(err)
	}
	drain(t, q, big)
	q.mu.Lock()
	pending := q.release != nil
	q.mu.Unlock()
	if pending || calls.Load() != 0 {
		st, _ := q.Stat(context.Background())
		t.Fatalf("memory returned while a job was still queued: pending %v calls %d stat %+v", pending, calls.Load(), st)
	}
	last := q.ReceiveReady(nil, 1) // the job left behind
	if len(last) != 1 {
		t.Fatalf("%d jobs left, want 1", len(last))
	}
	if err := last[0].Settle(context.Background(), consumer.Outcome{Action: consumer.Ack}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, calls, 1)

	heavy := make([]consumer.Job, 8)
	for i := range heavy {
		heavy[i].Payload = make([]byte, releaseAfterBytes/8)
	}
	drain(t, q, heavy)
	waitCalls(t, calls, 2)
}

// Close cancels a return of memory that has not run yet.
func TestCloseCancelsTheReturnOfMemory(t *testing.T) {
	q, calls := countingQueue(t)
	drain(t, q, make([]consumer.Job, releaseAfterJobs))
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	pending := q.release != nil
	q.mu.Unlock()
	if pending || calls.Load() != 0 {
		t.Fatalf("after Close: pending %v, returned %d times", pending, calls.Load())
	}
}
