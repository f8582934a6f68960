package memjobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// readyIDs returns the ids of ds.
func readyIDs(ds []*consumer.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func settleAll(t *testing.T, ds []*consumer.Delivery, o consumer.Outcome) {
	t.Helper()
	for _, d := range ds {
		settle(t, d, o)
	}
}

func TestReceiveReadyPriority(t *testing.T) {
	q := newQueue(t, memjobs.Config{Priority: 10})
	publish(t, q,
		consumer.Job{ID: "p20", Priority: 20},
		consumer.Job{ID: "inherit-a"}, // priority 0 inherits 10
		consumer.Job{ID: "p1", Priority: 1},
		consumer.Job{ID: "p10", Priority: 10},
		consumer.Job{ID: "inherit-b"},
		consumer.Job{ID: "p5", Priority: 5},
	)
	got := q.ReceiveReady(nil, 10)
	want := []string{"p1", "p5", "inherit-a", "p10", "inherit-b", "p20"}
	if !slices.Equal(readyIDs(got), want) {
		t.Fatalf("order %v, want %v", readyIDs(got), want)
	}
	for _, d := range got {
		if d.Attempt != 1 || d.Pipeline != "q" || d.Driver != memjobs.Driver || d.Queue != "q" {
			t.Fatalf("delivery %+v, want attempt 1 on pipeline q of the memory driver", d)
		}
	}
	if s := stat(t, q); s.Active != 6 || s.Ready != 0 {
		t.Fatalf("stat %+v, want 6 active and none ready", s)
	}
	settleAll(t, got, ack)
	if s := stat(t, q); s.Active != 0 {
		t.Fatalf("stat %+v after acking all, want none active", s)
	}
}

// TestReceiveReadyMatchesReceive runs the same publishes and settlements
// on two queues, one drained with Receive, the other with ReceiveReady in
// small batches, and wants the same deliveries in the same order: with
// priorities, retried and released jobs back at their position, keyed
// lanes, auto-ack jobs, open packs of jobs published one at a time, and a
// prefetch cap reached in the middle of a batch.
func TestReceiveReadyMatchesReceive(t *testing.T) {
	cfg := memjobs.Config{Priority: 10, Prefetch: 7}
	byReceive, byReady := newQueue(t, cfg), newQueue(t, cfg)
	for _, q := range []*memjobs.Queue{byReceive, byReady} {
		var batch []consumer.Job
		for i := range 40 {
			j := consumer.Job{ID: fmt.Sprintf("b%d", i), Name: "n", Payload: []byte{byte(i)}, Priority: int64(i%3) * 5}
			switch i % 7 {
			case 1:
				j.Key = fmt.Sprintf("k%d", i%2)
			case 3:
				j.AutoAck = true
			case 5:
				j.Headers = map[string][]string{"h": {fmt.Sprint(i)}}
			}
			batch = append(batch, j)
		}
		publish(t, q, batch...)
		for i := range 80 { // one by one: past the backlog, into open packs
			publish(t, q, consumer.Job{ID: fmt.Sprintf("s%d", i), Priority: int64(i%3) * 5})
		}
	}

	var order []string
	returned := map[string]bool{}
	for round := 0; ; round++ {
		var ready []*consumer.Delivery
		for {
			n := len(ready)
			ready = byReady.ReceiveReady(ready, 3)
			if len(ready)-n > 3 {
				t.Fatalf("ReceiveReady(max 3) handed out %d", len(ready)-n)
			}
			if len(ready) == n {
				break
			}
		}
		if len(ready) == 0 {
			break
		}
		var received []*consumer.Delivery
		for i, r := range ready {
			d := receive(t, byReceive)
			if d.ID != r.ID || d.Attempt != r.Attempt || d.Key != r.Key || d.Priority != r.Priority || d.Job != r.Job ||
				string(d.Body) != string(r.Body) || !slices.Equal(d.Headers["h"], r.Headers["h"]) {
				t.Fatalf("round %d, delivery %d: Receive gave %+v, ReceiveReady %+v", round, i, d, r)
			}
			received = append(received, d)
			order = append(order, r.ID)
		}
		// Where ReceiveReady stopped, Receive blocks.
		nothing(t, byReceive, 5*time.Millisecond)
		// The same fates on both sides: some jobs go back once (Retry or
		// Release), the rest is acked.
		for i, r := range ready {
			o := ack
			if i%3 == 0 && !returned[r.ID] {
				returned[r.ID] = true
				o = consumer.Outcome{Action: consumer.Retry}
				if i%2 == 0 {
					o = consumer.Outcome{Action: consumer.Release}
				}
			}
			settle(t, received[i], o)
			settle(t, r, o)
		}
		if round > 500 {
			t.Fatalf("still handing out jobs after %d rounds", round)
		}
	}
	nothing(t, byReceive, 20*time.Millisecond)
	if s := stat(t, byReady); s.Ready != 0 || s.Active != 0 || s.Delayed != 0 {
		t.Fatalf("stat %+v after draining with ReceiveReady, want empty", s)
	}
	seen := map[string]int{}
	for _, id := range order {
		if seen[id]++; seen[id] > 2 {
			t.Fatalf("job %q handed out %d times, want at most twice", id, seen[id])
		}
	}
	if len(seen) != 120 || len(order) <= 120 {
		t.Fatalf("%d deliveries of %d jobs, want all 120 jobs and some twice", len(order), len(seen))
	}
}

func TestReceiveReadyMax(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q, jobs("j", 10)...)
	if got := q.ReceiveReady(nil, 0); len(got) != 0 {
		t.Fatalf("max 0 handed out %v", readyIDs(got))
	}
	if got := q.ReceiveReady(nil, -1); len(got) != 0 {
		t.Fatalf("max -1 handed out %v", readyIDs(got))
	}
	first := receive(t, q)
	dst := make([]*consumer.Delivery, 1, 8)
	dst[0] = first
	dst = q.ReceiveReady(dst, 3)
	if want := []string{"j0", "j1", "j2", "j3"}; !slices.Equal(readyIDs(dst), want) {
		t.Fatalf("dst %v, want %v (appended to what it held)", readyIDs(dst), want)
	}
	dst = q.ReceiveReady(dst, 100)
	if len(dst) != 10 || dst[9].ID != "j9" {
		t.Fatalf("dst %v, want j0 to j9", readyIDs(dst))
	}
	if s := stat(t, q); s.Active != 10 || s.Ready != 0 {
		t.Fatalf("stat %+v, want 10 active", s)
	}
	if got := q.ReceiveReady(dst, 5); len(got) != 10 {
		t.Fatalf("empty queue: dst grew to %v", readyIDs(got))
	}
	settleAll(t, dst, ack)
}

func TestReceiveReadyPrefetchCap(t *testing.T) {
	q := newQueue(t, memjobs.Config{Prefetch: 3})
	publish(t, q, jobs("j", 6)...)
	a, b := receive(t, q), receive(t, q)
	got := q.ReceiveReady(nil, 10)
	if !slices.Equal(readyIDs(got), []string{"j2"}) {
		t.Fatalf("with 2 of prefetch 3 out got %v, want j2 only", readyIDs(got))
	}
	if more := q.ReceiveReady(nil, 10); len(more) != 0 {
		t.Fatalf("at the prefetch cap got %v", readyIDs(more))
	}
	nothing(t, q, 30*time.Millisecond)
	settle(t, a, ack)
	settle(t, b, ack)
	j2 := got[0]
	got = q.ReceiveReady(got[:0], 10)
	if !slices.Equal(readyIDs(got), []string{"j3", "j4"}) {
		t.Fatalf("after two acks got %v, want j3 j4", readyIDs(got))
	}
	settleAll(t, append(got, j2), ack)

	// Auto-ack jobs are settled on receipt and do not count.
	publish(t, q, consumer.Job{ID: "auto1", AutoAck: true}, consumer.Job{ID: "auto2", AutoAck: true})
	got = q.ReceiveReady(nil, 10)
	if want := []string{"j5", "auto1", "auto2"}; !slices.Equal(readyIDs(got), want) {
		t.Fatalf("got %v, want %v", readyIDs(got), want)
	}
	if s := stat(t, q); s.Active != 1 {
		t.Fatalf("stat %+v, want only j5 active", s)
	}
	settleAll(t, got, ack)
}

func TestReceiveReadyPausedAndClosed(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q, jobs("j", 3)...)
	if err := q.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := q.ReceiveReady(nil, 10); len(got) != 0 {
		t.Fatalf("paused: got %v", readyIDs(got))
	}
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := q.ReceiveReady(nil, 1)
	if !slices.Equal(readyIDs(got), []string{"j0"}) {
		t.Fatalf("after Resume got %v, want j0", readyIDs(got))
	}

	// Closing (waiting for j0) and closed: nothing more is handed out.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- q.Close(ctx) }()
	deadline := time.Now().Add(wait)
	for q.Check() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Close did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if more := q.ReceiveReady(nil, 10); len(more) != 0 {
		t.Fatalf("closing: got %v", readyIDs(more))
	}
	settle(t, got[0], ack)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if more := q.ReceiveReady(nil, 10); len(more) != 0 {
		t.Fatalf("closed: got %v", readyIDs(more))
	}
}

func TestReceiveReadyDelayed(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	const delay = 60 * time.Millisecond
	// Due no earlier than start+delay, no later than published+delay.
	start := time.Now()
	publish(t, q, consumer.Job{ID: "later", Delay: delay}, consumer.Job{ID: "now"}, consumer.Job{ID: "much-later", Delay: time.Hour})
	published := time.Now()
	got := q.ReceiveReady(nil, 10)
	if time.Since(start) < delay && !slices.Equal(readyIDs(got), []string{"now"}) {
		t.Fatalf("before the delay got %v, want now only", readyIDs(got))
	}
	time.Sleep(delay - time.Since(published))
	got = q.ReceiveReady(got, 10)
	if !slices.Equal(readyIDs(got), []string{"now", "later"}) {
		t.Fatalf("after the delay got %v, want now later", readyIDs(got))
	}
	// A retry delay holds the job back as well.
	start = time.Now()
	settle(t, got[1], consumer.Outcome{Action: consumer.Retry, Delay: delay})
	retried := time.Now()
	if more := q.ReceiveReady(nil, 10); len(more) != 0 && time.Since(start) < delay {
		t.Fatalf("before the retry delay got %v", readyIDs(more))
	}
	time.Sleep(delay - time.Since(retried))
	more := q.ReceiveReady(nil, 10)
	if len(more) != 1 || more[0].ID != "later" || more[0].Attempt != 2 {
		t.Fatalf("after the retry delay got %v, want later at attempt 2", readyIDs(more))
	}
	settle(t, got[0], ack)
	settle(t, more[0], ack)
	if s := stat(t, q); s.Delayed != 1 || s.Active != 0 {
		t.Fatalf("stat %+v, want only much-later delayed", s)
	}
}

func TestReceiveReadyKeyLane(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q,
		consumer.Job{ID: "k1", Key: "k"},
		consumer.Job{ID: "k2", Key: "k"},
		consumer.Job{ID: "free"},
	)
	got := q.ReceiveReady(nil, 10)
	if !slices.Equal(readyIDs(got), []string{"k1", "free"}) || got[0].Key != "k" {
		t.Fatalf("got %v, want k1 (key k) and free: k2 waits behind k1", readyIDs(got))
	}
	if more := q.ReceiveReady(nil, 10); len(more) != 0 {
		t.Fatalf("with k1 out got %v", readyIDs(more))
	}
	nothing(t, q, 30*time.Millisecond)
	// A retried k1 comes back before k2, which still waits.
	settle(t, got[0], consumer.Outcome{Action: consumer.Retry})
	again := q.ReceiveReady(nil, 10)
	if len(again) != 1 || again[0].ID != "k1" || again[0].Attempt != 2 {
		t.Fatalf("after Retry got %v, want k1 at attempt 2 alone", readyIDs(again))
	}
	settle(t, again[0], ack)
	next := q.ReceiveReady(nil, 10)
	if !slices.Equal(readyIDs(next), []string{"k2"}) || next[0].Key != "k" {
		t.Fatalf("after k1 was acked got %v, want k2", readyIDs(next))
	}
	settle(t, next[0], ack)
	settle(t, got[1], ack)
}

func TestReceiveReadySettle(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q,
		consumer.Job{ID: "acked", Name: "N"},
		consumer.Job{ID: "retried", Name: "N", Headers: map[string][]string{"a": {"1"}}},
		consumer.Job{ID: "dead", Name: "N", Payload: []byte("body")},
	)
	got := q.ReceiveReady(nil, 3)
	if len(got) != 3 {
		t.Fatalf("got %v, want 3 deliveries", readyIDs(got))
	}
	if s := stat(t, q); s.Active != 3 || s.Ready != 0 {
		t.Fatalf("stat %+v, want 3 active", s)
	}
	settle(t, got[0], ack)
	if s := stat(t, q); s.Active != 2 || s.Ready != 0 {
		t.Fatalf("stat after Ack %+v, want 2 active", s)
	}
	settle(t, got[1], consumer.Outcome{Action: consumer.Requeue, Headers: map[string][]string{"b": {"2"}}})
	if s := stat(t, q); s.Active != 1 || s.Ready != 1 {
		t.Fatalf("stat after Requeue %+v, want 1 active and 1 ready", s)
	}
	settle(t, got[2], consumer.Outcome{Action: consumer.Dead, Reason: "broken"})
	if s := stat(t, q); s.Active != 0 || s.Ready != 1 {
		t.Fatalf("stat after Dead %+v, want 1 ready", s)
	}
	dead := q.Dead()
	if len(dead) != 1 || dead[0].Job.ID != "dead" || string(dead[0].Job.Payload) != "body" ||
		dead[0].Reason != "broken" || dead[0].Attempts != 1 {
		t.Fatalf("dead list %+v, want the job dead with reason broken at attempt 1", dead)
	}
	for _, d := range got {
		if err := d.Settle(context.Background(), ack); !errors.Is(err, consumer.ErrAlreadySettled) {
			t.Fatalf("second Settle of %q = %v, want ErrAlreadySettled", d.ID, err)
		}
	}
	back := q.ReceiveReady(nil, 3)
	if len(back) != 1 || back[0].ID != "retried" || back[0].Attempt != 2 ||
		!slices.Equal(back[0].Headers["a"], []string{"1"}) || !slices.Equal(back[0].Headers["b"], []string{"2"}) {
		t.Fatalf("after Requeue got %+v, want retried at attempt 2 with headers merged", back)
	}
	settle(t, back[0], consumer.Outcome{Action: consumer.Release})
	if d := receive(t, q); d.ID != "retried" || d.Attempt != 2 {
		t.Fatalf("after Release got %q attempt %d, want retried at attempt 2", d.ID, d.Attempt)
	} else {
		settle(t, d, ack)
	}
	if s := stat(t, q); s.Active != 0 || s.Ready != 0 || len(q.Dead()) != 1 {
		t.Fatalf("stat %+v, %d dead, want empty and one dead", s, len(q.Dead()))
	}
}

// TestReceiveReadyLeavesBlockedReceiveAJob: a batch smaller than what is
// ready does not starve a Receive blocked in another goroutine.
func TestReceiveReadyLeavesBlockedReceiveAJob(t *testing.T) {
	for i := range 50 {
		q := memjobs.New("q", memjobs.Config{}, nil)
		got := make(chan *consumer.Delivery, 1)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		go func() {
			d, err := q.Receive(ctx)
			if err != nil {
				t.Errorf("run %d: blocked Receive: %v", i, err)
			}
			got <- d
		}()
		if i%2 == 0 {
			time.Sleep(time.Millisecond) // most likely blocked by now
		}
		publish(t, q, jobs("j", 4)...)
		batch := q.ReceiveReady(nil, 2)
		d := <-got
		cancel()
		if d == nil {
			t.FailNow()
		}
		if len(batch) != 2 || slices.Contains(readyIDs(batch), d.ID) {
			t.Fatalf("run %d: batch %v, blocked Receive got %q", i, readyIDs(batch), d.ID)
		}
		rest := q.ReceiveReady(nil, 10)
		if len(rest) != 1 {
			t.Fatalf("run %d: left over %v, want the fourth job", i, readyIDs(rest))
		}
		all := append(append(readyIDs(batch), d.ID), rest[0].ID)
		slices.Sort(all)
		if !slices.Equal(all, []string{"j0", "j1", "j2", "j3"}) {
			t.Fatalf("run %d: handed out %v, want each job once", i, all)
		}
		settleAll(t, append(batch, d, rest[0]), ack)
		if err := q.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReceiveReadyAllocs: a batch allocates its deliveries (each with its
// settle function) and nothing else.
func TestReceiveReadyAllocs(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q, jobs("j", 1000)...)
	const batch = 8
	dst := make([]*consumer.Delivery, 0, batch)
	allocs := testing.AllocsPerRun(100, func() {
		dst = q.ReceiveReady(dst[:0], batch)
		if len(dst) != batch {
			t.Fatalf("got %d deliveries, want %d", len(dst), batch)
		}
		for _, d := range dst {
			if err := d.Settle(context.Background(), ack); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 2*batch {
		t.Fatalf("%v allocations per batch of %d, want at most %d", allocs, batch, 2*batch)
	}
}
