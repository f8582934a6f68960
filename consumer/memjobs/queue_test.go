package memjobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

const wait = 5 * time.Second

func newQueue(t *testing.T, cfg memjobs.Config) *memjobs.Queue {
	t.Helper()
	q := memjobs.New("q", cfg, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = q.Close(ctx) // a failed test may leave deliveries unsettled
	})
	return q
}

func publish(t *testing.T, q *memjobs.Queue, jobs ...consumer.Job) {
	t.Helper()
	if err := q.Publish(context.Background(), jobs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func receive(t *testing.T, q *memjobs.Queue) *consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	d, err := q.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return d
}

// nothing fails if q hands out a job within d.
func nothing(t *testing.T, q *memjobs.Queue, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if got, err := q.Receive(ctx); err == nil {
		t.Fatalf("got job %q, want nothing", got.ID)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %v, want DeadlineExceeded", err)
	}
}

func settle(t *testing.T, d *consumer.Delivery, o consumer.Outcome) {
	t.Helper()
	if err := d.Settle(context.Background(), o); err != nil {
		t.Fatalf("Settle(%s) %q: %v", o.Action, d.ID, err)
	}
}

var ack = consumer.Outcome{Action: consumer.Ack}

// ids receives n jobs, acking each, and returns their ids in order.
func ids(t *testing.T, q *memjobs.Queue, n int) []string {
	t.Helper()
	var out []string
	for range n {
		d := receive(t, q)
		out = append(out, d.ID)
		settle(t, d, ack)
	}
	return out
}

func jobs(prefix string, n int) []consumer.Job {
	out := make([]consumer.Job, n)
	for i := range out {
		out[i] = consumer.Job{ID: fmt.Sprintf("%s%d", prefix, i), Name: "j"}
	}
	return out
}

func stat(t *testing.T, q *memjobs.Queue) consumer.Stat {
	t.Helper()
	s, err := q.Stat(context.Background())
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	return s
}

func TestDeliveryFields(t *testing.T) {
	q := newQueue(t, memjobs.Config{Priority: 7})
	publish(t, q, consumer.Job{ID: "a", Name: "App\\Job", Payload: []byte("p"), Headers: map[string][]string{"h": {"v"}}, Key: "k"})
	d := receive(t, q)
	want := consumer.Delivery{ID: "a", Job: "App\\Job", Pipeline: "q", Driver: "memory", Queue: "q", Attempt: 1, Key: "k", Priority: 7}
	if d.ID != want.ID || d.Job != want.Job || d.Pipeline != want.Pipeline || d.Driver != want.Driver ||
		d.Queue != want.Queue || d.Attempt != want.Attempt || d.Key != want.Key || d.Priority != want.Priority ||
		string(d.Body) != "p" || !slices.Equal(d.Headers["h"], []string{"v"}) {
		t.Fatalf("delivery = %+v", d)
	}
	settle(t, d, ack)
}

func TestPublishGeneratesID(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q, consumer.Job{Name: "x"}, consumer.Job{Name: "y"})
	a, b := receive(t, q), receive(t, q)
	if a.ID == "" || b.ID == "" || a.ID == b.ID {
		t.Fatalf("generated ids %q and %q, want two distinct non-empty ids", a.ID, b.ID)
	}
	settle(t, a, ack)
	settle(t, b, ack)
}

func TestPriority(t *testing.T) {
	q := newQueue(t, memjobs.Config{Priority: 10})
	publish(t, q,
		consumer.Job{ID: "p20", Priority: 20},
		consumer.Job{ID: "inherit-a"}, // priority 0 inherits 10
		consumer.Job{ID: "p1", Priority: 1},
		consumer.Job{ID: "p10", Priority: 10},
		consumer.Job{ID: "inherit-b"},
		consumer.Job{ID: "p5", Priority: 5},
	)
	got := ids(t, q, 6)
	want := []string{"p1", "p5", "inherit-a", "p10", "inherit-b", "p20"}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestRetryKeepsOriginalPosition(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q, jobs("j", 5)...)
	a, b, c := receive(t, q), receive(t, q), receive(t, q)
	// Retry c, then a, then release b: all three go back ahead of j3, j4,
	// in their original order.
	settle(t, c, consumer.Outcome{Action: consumer.Retry})
	settle(t, a, consumer.Outcome{Action: consumer.Retry})
	settle(t, b, consumer.Outcome{Action: consumer.Release})
	publish(t, q, consumer.Job{ID: "late"})
	var got []string
	var attempts []int
	for range 6 {
		d := receive(t, q)
		got = append(got, d.ID)
		attempts = append(attempts, d.Attempt)
		settle(t, d, ack)
	}
	if want := []string{"j0", "j1", "j2", "j3", "j4", "late"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if want := []int{2, 1, 2, 1, 1, 1}; !slices.Equal(attempts, want) {
		t.Fatalf("attempts %v, want %v", attempts, want)
	}
}

func TestDelay(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	const d = 150 * time.Millisecond
	start := time.Now()
	publish(t, q, consumer.Job{ID: "late", Delay: 2 * d}, consumer.Job{ID: "soon", Delay: d}, consumer.Job{ID: "now"})
	if s := stat(t, q); s.Ready != 1 || s.Delayed != 2 {
		t.Fatalf("stat ready %d delayed %d, want 1 and 2", s.Ready, s.Delayed)
	}
	got := ids(t, q, 3)
	if el := time.Since(start); el < 2*d {
		t.Fatalf("all three handed out after %v, before the longest delay %v", el, 2*d)
	}
	if want := []string{"now", "soon", "late"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// A delayed job that becomes ready queues behind jobs already ready.
	publish(t, q, consumer.Job{ID: "delayed", Delay: d})
	deadline := time.Now().Add(wait)
	for stat(t, q).Delayed != 0 {
		if time.Now().After(deadline) {
			t.Fatal("delayed job still delayed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	publish(t, q, consumer.Job{ID: "after"})
	if got := ids(t, q, 2); !slices.Equal(got, []string{"delayed", "after"}) {
		t.Fatalf("order %v, want the delayed job first (it became ready first)", got)
	}
}

func TestRetryDelayAndRequeueHeaders(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q, consumer.Job{ID: "a", Headers: map[string][]string{"x": {"1"}, "y": {"2"}}})
	d := receive(t, q)
	const delay = 100 * time.Millisecond
	start := time.Now()
	settle(t, d, consumer.Outcome{Action: consumer.Requeue, Delay: delay, Headers: map[string][]string{"y": {"3"}, "z": {"4"}}})
	if s := stat(t, q); s.Delayed != 1 || s.Ready != 0 || s.Active != 0 {
		t.Fatalf("stat after requeue %+v, want one delayed", s)
	}
	d2 := receive(t, q)
	if el := time.Since(start); el < delay {
		t.Fatalf("requeued job back after %v, before %v", el, delay)
	}
	want := map[string][]string{"x": {"1"}, "y": {"3"}, "z": {"4"}}
	if len(d2.Headers) != 3 || !slices.Equal(d2.Headers["x"], want["x"]) || !slices.Equal(d2.Headers["y"], want["y"]) || !slices.Equal(d2.Headers["z"], want["z"]) {
		t.Fatalf("headers %v, want %v", d2.Headers, want)
	}
	if !slices.Equal(d.Headers["y"], []string{"2"}) {
		t.Fatalf("the first delivery's headers changed to %v", d.Headers)
	}
	if d2.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", d2.Attempt)
	}
	settle(t, d2, ack)
}

func TestKeyLanes(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q,
		consumer.Job{ID: "a1", Key: "a"},
		consumer.Job{ID: "a2", Key: "a"},
		consumer.Job{ID: "free1"},
		consumer.Job{ID: "b1", Key: "b"},
		consumer.Job{ID: "a3", Key: "a"},
		consumer.Job{ID: "free2"},
	)
	if s := stat(t, q); s.Ready != 6 {
		t.Fatalf("ready %d, want 6 (lane jobs count as ready)", s.Ready)
	}
	a1 := receive(t, q)
	// a2 waits behind a1; unkeyed jobs and other keys are not held up.
	var got []*consumer.Delivery
	for range 3 {
		got = append(got, receive(t, q))
	}
	if g := []string{got[0].ID, got[1].ID, got[2].ID}; !slices.Equal(g, []string{"free1", "b1", "free2"}) {
		t.Fatalf("while a1 is out got %v, want free1 b1 free2", g)
	}
	nothing(t, q, 50*time.Millisecond)
	for _, d := range got {
		settle(t, d, ack)
	}
	// A retried keyed job with a delay keeps its lane blocked.
	settle(t, a1, consumer.Outcome{Action: consumer.Retry, Delay: 80 * time.Millisecond})
	nothing(t, q, 40*time.Millisecond)
	d := receive(t, q)
	if d.ID != "a1" || d.Attempt != 2 {
		t.Fatalf("got %q attempt %d, want a1 attempt 2", d.ID, d.Attempt)
	}
	// Dead ends a1 and lets a2 go.
	settle(t, d, consumer.Outcome{Action: consumer.Dead, Reason: "r"})
	if got := ids(t, q, 2); !slices.Equal(got, []string{"a2", "a3"}) {
		t.Fatalf("lane a continued with %v, want a2 a3", got)
	}
	if s := stat(t, q); s.Ready != 0 || s.Active != 0 || s.Delayed != 0 {
		t.Fatalf("stat %+v, want empty", s)
	}
	// The lane is gone: a new job on key a is handed out at once.
	publish(t, q, consumer.Job{ID: "a4", Key: "a"})
	if got := ids(t, q, 1); got[0] != "a4" {
		t.Fatalf("got %v, want a4", got)
	}
}

func TestKeyLaneWithPublishDelay(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	const delay = 80 * time.Millisecond
	start := time.Now()
	publish(t, q,
		consumer.Job{ID: "k1", Key: "k"},
		consumer.Job{ID: "k2", Key: "k", Delay: delay},
		consumer.Job{ID: "k3", Key: "k"},
	)
	got := ids(t, q, 3)
	if !slices.Equal(got, []string{"k1", "k2", "k3"}) {
		t.Fatalf("order %v, want k1 k2 k3", got)
	}
	if el := time.Since(start); el < delay {
		t.Fatalf("lane done after %v, before k2's delay %v", el, delay)
	}
}

func TestDeadList(t *testing.T) {
	q := newQueue(t, memjobs.Config{Priority: 4})
	before := time.Now()
	publish(t, q, consumer.Job{ID: "d", Name: "N", Payload: []byte("body"), Headers: map[string][]string{"a": {"1"}}, Key: "k"})
	d := receive(t, q)
	settle(t, d, consumer.Outcome{Action: consumer.Requeue, Headers: map[string][]string{"b": {"2"}}})
	d = receive(t, q)
	settle(t, d, consumer.Outcome{Action: consumer.Dead, Reason: "broken"})
	dead := q.Dead()
	if len(dead) != 1 {
		t.Fatalf("dead list has %d jobs, want 1", len(dead))
	}
	j := dead[0]
	if j.Job.ID != "d" || j.Job.Name != "N" || string(j.Job.Payload) != "body" || j.Job.Pipeline != "q" ||
		j.Job.Key != "k" || j.Job.Priority != 4 || j.Reason != "broken" || j.Attempts != 2 ||
		!slices.Equal(j.Job.Headers["a"], []string{"1"}) || !slices.Equal(j.Job.Headers["b"], []string{"2"}) {
		t.Fatalf("dead job = %+v", j)
	}
	if j.At.Before(before) || j.At.After(time.Now()) {
		t.Fatalf("dead time %v outside the test", j.At)
	}
	nothing(t, q, 50*time.Millisecond)
	if n := q.PurgeDead(); n != 1 {
		t.Fatalf("PurgeDead = %d, want 1", n)
	}
	if n := len(q.Dead()); n != 0 {
		t.Fatalf("dead list has %d jobs after purge", n)
	}
}

func TestDeadListCap(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	const n = 2*memjobs.DeadListCap + 5
	publish(t, q, jobs("d", n)...)
	for range n {
		settle(t, receive(t, q), consumer.Outcome{Action: consumer.Dead})
	}
	dead := q.Dead()
	if len(dead) != memjobs.DeadListCap {
		t.Fatalf("dead list has %d jobs, want %d", len(dead), memjobs.DeadListCap)
	}
	if first, last := dead[0].Job.ID, dead[len(dead)-1].Job.ID; first != fmt.Sprintf("d%d", n-memjobs.DeadListCap) || last != fmt.Sprintf("d%d", n-1) {
		t.Fatalf("dead list spans %s..%s, want the newest %d", first, last, memjobs.DeadListCap)
	}
}

func TestAutoAck(t *testing.T) {
	q := newQueue(t, memjobs.Config{Prefetch: 1})
	publish(t, q,
		consumer.Job{ID: "auto", Key: "k", AutoAck: true},
		consumer.Job{ID: "next", Key: "k"},
	)
	d := receive(t, q)
	if d.ID != "auto" {
		t.Fatalf("got %q, want auto", d.ID)
	}
	if s := stat(t, q); s.Active != 0 {
		t.Fatalf("active %d after an auto-ack receipt, want 0", s.Active)
	}
	// The lane moved on and the prefetch slot stayed free.
	d2 := receive(t, q)
	if d2.ID != "next" {
		t.Fatalf("got %q, want next", d2.ID)
	}
	if err := d.Settle(context.Background(), consumer.Outcome{Action: consumer.Retry}); err != nil {
		t.Fatalf("Settle of an auto-acked delivery = %v, want nil", err)
	}
	settle(t, d2, ack)
	nothing(t, q, 50*time.Millisecond)
}

func TestPrefetchCap(t *testing.T) {
	q := newQueue(t, memjobs.Config{Prefetch: 2})
	publish(t, q, jobs("j", 3)...)
	a, b := receive(t, q), receive(t, q)
	nothing(t, q, 50*time.Millisecond)
	got := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		d, err := q.Receive(ctx)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- d.ID
		_ = d.Settle(ctx, ack)
	}()
	settle(t, a, ack)
	if id := <-got; id != "j2" {
		t.Fatalf("after a settle got %q, want j2", id)
	}
	settle(t, b, ack)
}

func TestPauseResume(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	if err := q.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	publish(t, q, jobs("j", 1)...)
	nothing(t, q, 50*time.Millisecond)
	if s := stat(t, q); s.Consuming || s.Ready != 1 {
		t.Fatalf("stat while paused %+v", s)
	}
	got := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		d, err := q.Receive(ctx)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- d.ID
		_ = d.Settle(ctx, ack)
	}()
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if id := <-got; id != "j0" {
		t.Fatalf("after Resume got %q, want j0", id)
	}
}

func TestCloseSemantics(t *testing.T) {
	q := memjobs.New("q", memjobs.Config{}, nil)
	publish(t, q, jobs("j", 2)...)
	d := receive(t, q)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := q.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with an unsettled delivery = %v, want DeadlineExceeded", err)
	}
	if err := d.Settle(context.Background(), ack); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Settle after Close returned = %v, want ErrClosed", err)
	}
	if err := q.Publish(context.Background(), jobs("x", 1)); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := q.Check(); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Check after Close = %v, want ErrClosed", err)
	}
	if err := q.Pause(context.Background()); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Pause after Close = %v, want ErrClosed", err)
	}
	if err := q.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if s := stat(t, q); s.Ready != 1 || s.Consuming {
		t.Fatalf("stat after Close %+v, want the unhanded job still counted", s)
	}
}

func TestUnknownActionKeepsJob(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q, jobs("j", 1)...)
	d := receive(t, q)
	if err := d.Settle(context.Background(), consumer.Outcome{Action: consumer.Action(99)}); !errors.Is(err, consumer.ErrUnknownAction) {
		t.Fatalf("Settle(99) = %v, want ErrUnknownAction", err)
	}
	d2 := receive(t, q)
	if d2.ID != "j0" || d2.Attempt != 1 {
		t.Fatalf("got %q attempt %d, want j0 back with attempt 1", d2.ID, d2.Attempt)
	}
	settle(t, d2, ack)
}

// TestConcurrentMixedOutcomes runs publishers and receivers at once with
// every outcome; each job must end acked or dead exactly once.
func TestConcurrentMixedOutcomes(t *testing.T) {
	q := newQueue(t, memjobs.Config{Prefetch: 8})
	const publishers, receivers, each = 4, 6, 300
	total := publishers * each
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		final = map[string]int{}
		errs  []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for p := range publishers {
		wg.Go(func() {
			for i := 0; i < each; i += 10 {
				batch := make([]consumer.Job, 10)
				for k := range batch {
					batch[k] = consumer.Job{ID: fmt.Sprintf("p%d-%d", p, i+k), Key: fmt.Sprintf("k%d", (i+k)%7), Priority: int64(1 + (i+k)%3)}
					if k%4 == 0 {
						batch[k].Key = ""
					}
				}
				// Every other batch goes one job at a time: plain jobs
				// published alone join open packs once a backlog builds.
				parts := [][]consumer.Job{batch}
				if (i/10)%2 == 1 {
					parts = parts[:0]
					for k := range batch {
						parts = append(parts, batch[k:k+1])
					}
				}
				for _, part := range parts {
					if err := q.Publish(ctx, part); err != nil {
						fail(err)
						return
					}
				}
			}
		})
	}
	for r := range receivers {
		wg.Go(func() {
			for n := 0; ; n++ {
				d, err := q.Receive(ctx)
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				o := consumer.Outcome{Action: consumer.Ack}
				switch (n + r) % 6 {
				case 1:
					if d.Attempt < 3 {
						o = consumer.Outcome{Action: consumer.Retry}
					}
				case 2:
					o = consumer.Outcome{Action: consumer.Release, Delay: time.Millisecond}
				case 3:
					o = consumer.Outcome{Action: consumer.Dead}
				case 4:
					if d.Attempt < 3 {
						o = consumer.Outcome{Action: consumer.Requeue, Delay: time.Millisecond, Headers: map[string][]string{"r": {"1"}}}
					}
				}
				if err := d.Settle(ctx, o); err != nil {
					fail(err)
					return
				}
				if o.Action == consumer.Ack || o.Action == consumer.Dead {
					mu.Lock()
					final[d.ID]++
					done := len(final) == total
					mu.Unlock()
					if done {
						cancel()
					}
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(final) != total {
		t.Fatalf("%d of %d jobs finished", len(final), total)
	}
	for id, n := range final {
		if n != 1 {
			t.Fatalf("job %s finished %d times", id, n)
		}
	}
	if s := stat(t, q); s.Ready != 0 || s.Delayed != 0 || s.Active != 0 {
		t.Fatalf("stat after the run %+v, want empty", s)
	}
}
