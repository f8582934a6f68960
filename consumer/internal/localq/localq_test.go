package localq

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// fake is a Source of numbered jobs: ready in FIFO order, delayed ones
// due at a wall-clock time.
type fake struct {
	c       *Core
	mu      sync.Mutex
	ready   []int
	delayed map[int]time.Time
}

func newFake(prefetch int) *fake {
	f := &fake{c: &Core{}, delayed: map[int]time.Time{}}
	f.c.Init(&f.mu, Config{Prefix: "fake", Driver: "fake", Name: "q", Priority: 10, Prefetch: prefetch})
	return f
}

func (f *fake) PromoteDue() {
	for n, due := range f.delayed {
		if !time.Now().Before(due) {
			delete(f.delayed, n)
			f.ready = append(f.ready, n)
		}
	}
}

func (f *fake) TakeReady() (int, bool) {
	if len(f.ready) == 0 {
		return 0, false
	}
	n := f.ready[0]
	f.ready = f.ready[1:]
	f.c.HandOutLocked()
	return n, true
}

func (f *fake) ReadyLen() int { return len(f.ready) }

func (f *fake) NextDue() (time.Duration, bool) {
	var first time.Time
	for _, due := range f.delayed {
		if first.IsZero() || due.Before(first) {
			first = due
		}
	}
	return time.Until(first), !first.IsZero()
}

func (f *fake) Deliver(n int) *consumer.Delivery {
	d := &consumer.Delivery{ID: fmt.Sprint(n)}
	d.SetSettle(func(context.Context, consumer.Outcome) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.c.SettledLocked()
		return nil
	})
	return d
}

// push makes jobs ready and wakes a blocked Receive, as a publish does.
func (f *fake) push(ns ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready = append(f.ready, ns...)
	f.c.KickLocked()
}

// waitFor yields until cond holds, for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func (f *fake) waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.c.waiters
}

// A blocked Receive gets the job pushed after it blocked; one over the
// prefetch cap waits for a settlement; a delayed job wakes it when due.
func TestReceiveWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := newFake(1)
	got := make(chan *consumer.Delivery)
	go func() {
		d, err := Receive(ctx, f.c, Source[int](f))
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	waitFor(t, "Receive to block", func() bool { return f.waiters() == 1 })
	f.push(1, 2)
	first := <-got
	if first.ID != "1" {
		t.Fatalf("got %s, want 1", first.ID)
	}
	go func() {
		d, err := Receive(ctx, f.c, Source[int](f))
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	waitFor(t, "Receive to block at the prefetch cap", func() bool { return f.waiters() == 1 })
	if err := first.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d.ID != "2" {
		t.Fatalf("got %s, want 2", d.ID)
	}
	f.mu.Lock()
	f.c.SettledLocked()
	f.delayed[3] = time.Now().Add(50 * time.Millisecond)
	f.mu.Unlock()
	d, err := Receive(ctx, f.c, Source[int](f))
	if err != nil || d.ID != "3" {
		t.Fatalf("Receive of a delayed job = %v, %v", d, err)
	}
}

// A ReceiveReady batch that leaves jobs ready wakes a blocked Receive and
// leaves it one job; a batch that takes the last job wakes nobody.
func TestReceiveReadyPassesTheBaton(t *testing.T) {
	f := newFake(100)
	f.ready = []int{1, 2, 3, 4, 5}
	f.c.waiters = 1 // as if a Receive were blocked, its wake-up already used
	got := ReceiveReady(f.c, Source[int](f), nil, 2)
	if len(got) != 2 {
		t.Fatalf("got %d deliveries, want 2", len(got))
	}
	select {
	case <-f.c.sig:
	default:
		t.Fatal("3 jobs still ready and the blocked Receive was not woken")
	}
	got = ReceiveReady(f.c, Source[int](f), got, 10)
	if len(got) != 4 {
		t.Fatalf("got %d deliveries, want 4: one stays for the waiting Receive", len(got))
	}
	select {
	case <-f.c.sig:
	default:
		t.Fatal("a job left for the blocked Receive and it was not woken")
	}
	f.c.waiters = 0
	got = ReceiveReady(f.c, Source[int](f), got, 10)
	if len(got) != 5 {
		t.Fatalf("got %d deliveries, want 5", len(got))
	}
	select {
	case <-f.c.sig:
		t.Fatal("woke a Receive with nothing left for it")
	default:
	}
	if n := len(ReceiveReady(f.c, Source[int](f), nil, 10)); n != 0 {
		t.Fatalf("an empty queue handed out %d", n)
	}
}

// Close wakes blocked Receives, waits for settlement (or ctx), and only
// the first Close reports last; afterwards Pause, Resume, Check and
// Receive fail with consumer.ErrClosed.
func TestClose(t *testing.T) {
	ctx := context.Background()
	f := newFake(10)
	errs := make(chan error)
	go func() {
		_, err := Receive(ctx, f.c, Source[int](f))
		errs <- err
	}()
	waitFor(t, "Receive to block", func() bool { return f.waiters() == 1 })
	f.push(1)
	waitFor(t, "the job handed out", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.c.Active() == 1
	})
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := Receive(ctx, f.c, Source[int](f))
		errs <- err
	}()
	waitFor(t, "Receive to block", func() bool { return f.waiters() == 1 })

	stopped := 0
	type result struct {
		last bool
		err  error
	}
	closed := make(chan result)
	go func() {
		last, err := f.c.Close(ctx, func() { stopped++ })
		closed <- result{last, err}
	}()
	if err := <-errs; !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("blocked Receive after Close = %v, want ErrClosed", err)
	}
	f.mu.Lock()
	if f.c.IsOpen() || f.c.IsClosed() {
		t.Error("while Close waits the queue must be neither open nor closed")
	}
	f.c.SettledLocked()
	f.mu.Unlock()
	if r := <-closed; !r.last || r.err != nil || stopped != 1 {
		t.Fatalf("Close = %v, %v (stopping ran %d times), want true, nil, once", r.last, r.err, stopped)
	}
	if last, err := f.c.Close(ctx, func() { stopped++ }); last || err != nil || stopped != 1 {
		t.Fatalf("second Close = %v, %v, stopping ran %d times", last, err, stopped)
	}
	for name, err := range map[string]error{
		"Pause": f.c.Pause(ctx), "Resume": f.c.Resume(ctx), "Check": f.c.Check(),
	} {
		if !errors.Is(err, consumer.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if _, err := Receive(ctx, f.c, Source[int](f)); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Receive after Close = %v", err)
	}
}

// Close with a delivery unsettled returns when ctx ends, with an error
// that counts it.
func TestCloseGivesUp(t *testing.T) {
	f := newFake(10)
	f.ready = []int{1}
	if got := ReceiveReady(f.c, Source[int](f), nil, 1); len(got) != 1 {
		t.Fatal("no delivery")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	last, err := f.c.Close(ctx, nil)
	if !last || !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, %v; want true and an error wrapping context.Canceled", last, err)
	}
}

// Pause stops hand-outs, Resume lets them go again; Stat reports both.
func TestPause(t *testing.T) {
	ctx := context.Background()
	f := newFake(10)
	f.ready = []int{1}
	if err := f.c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.c.StatLocked("q", 1, 0); st.Consuming || st.Ready != 1 || st.Driver != "fake" || st.Priority != 10 {
		t.Errorf("Stat while paused = %+v", st)
	}
	if got := ReceiveReady(f.c, Source[int](f), nil, 1); len(got) != 0 {
		t.Fatal("a paused queue handed out a job")
	}
	if err := f.c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ReceiveReady(f.c, Source[int](f), nil, 1); len(got) != 1 {
		t.Fatal("a resumed queue handed out nothing")
	}
}

// The jobs of a key come out of their lane one at a time in the order
// they joined, with their due times; the lane is dropped when empty.
func TestLanes(t *testing.T) {
	var ls Lanes[int]
	ls.Init()
	l, head := ls.Join("k", 0, 0)
	if !head {
		t.Fatal("the first job of a key does not head its lane")
	}
	for i := 1; i <= 200; i++ {
		if l2, head := ls.Join("k", i, int64(i*10)); head || l2 != l {
			t.Fatalf("job %d of a busy key heads a lane", i)
		}
	}
	if ls.Pending() != 200 {
		t.Fatalf("Pending = %d, want 200", ls.Pending())
	}
	for i := 1; i <= 200; i++ {
		next, due, ok := ls.Next(l)
		if !ok || next != i || due != int64(i*10) {
			t.Fatalf("Next = %d, %d, %v; want %d, %d", next, due, ok, i, i*10)
		}
	}
	if _, _, ok := ls.Next(l); ok || ls.Pending() != 0 {
		t.Fatal("an empty lane handed out a job")
	}
	if _, head := ls.Join("k", 1, 0); !head {
		t.Fatal("the key's lane was not dropped once empty")
	}
}
