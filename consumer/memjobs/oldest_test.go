package memjobs

import (
	"context"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestEnqueuedAndOldestReady: each delivery carries the time of its own
// publish, OldestReady is the oldest waiting job's, a job retried with a
// delay is dated from the end of its delay, and an empty queue reports
// none.
func TestEnqueuedAndOldestReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := New("q", Config{}, nil)
	defer q.Close(ctx)
	if _, ok := q.OldestReady(); ok {
		t.Fatal("OldestReady of an empty queue reports a job")
	}
	var windows [3][2]time.Time
	for i := range windows {
		windows[i][0] = time.Now()
		if err := q.Publish(ctx, []consumer.Job{{ID: string(rune('a' + i)), Pipeline: "q"}, {ID: string(rune('A' + i)), Pipeline: "q"}}); err != nil {
			t.Fatal(err)
		}
		windows[i][1] = time.Now()
	}
	in := func(at time.Time, w [2]time.Time) bool { return !at.Before(w[0]) && !at.After(w[1]) }
	oldest, ok := q.OldestReady()
	if !ok || !in(oldest, windows[0]) {
		t.Fatalf("OldestReady = %v %v, want within the first publish %v", oldest, ok, windows[0])
	}
	var ds []*consumer.Delivery
	for i := range 6 {
		d, err := q.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !in(d.Enqueued, windows[i/2]) {
			t.Errorf("job %s Enqueued = %v, want within its publish %v", d.ID, d.Enqueued, windows[i/2])
		}
		if i == 1 {
			next, _ := q.OldestReady()
			if !in(next, windows[1]) {
				t.Errorf("OldestReady after receiving the first batch = %v, want within the second publish", next)
			}
		}
		ds = append(ds, d)
	}
	if _, ok := q.OldestReady(); ok {
		t.Error("OldestReady with every job handed out reports a job")
	}
	retryAt := time.Now()
	if err := ds[0].Settle(ctx, consumer.Outcome{Action: consumer.Retry, Delay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	d, err := q.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Enqueued.Before(retryAt.Add(50 * time.Millisecond)) {
		t.Errorf("retried job Enqueued = %v, want after its delay ended (%v)", d.Enqueued, retryAt.Add(50*time.Millisecond))
	}
}
