package sqsjobs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

func fifoEntry(group, id string) *entry {
	return &entry{group: group, md: meta{id: id}}
}

// takeNow takes a ready entry or fails.
func takeNow(t *testing.T, s *state) *entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	e, err := s.take(ctx)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	return e
}

func takeNone(t *testing.T, s *state) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if e, err := s.take(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take = %v, %v; want nothing", e, err)
	}
}

// TestStateReserve: polls ask for no more than the waiting Receive calls
// and the prefetch allow, counting what is already requested or buffered.
func TestStateReserve(t *testing.T) {
	var s state
	s.init(3, false)
	if n, _, ok := s.reserve(); n != 0 || !ok {
		t.Fatalf("reserve with no waiter = %d, %v", n, ok)
	}
	s.waiters = 5
	if n, _, _ := s.reserve(); n != 3 {
		t.Fatalf("reserve with 5 waiters, prefetch 3 = %d", n)
	}
	if n, _, _ := s.reserve(); n != 0 {
		t.Fatalf("second reserve while 3 are requested = %d", n)
	}
	s.received(3, []*entry{fifoEntry("", "a")})
	if n, _, _ := s.reserve(); n != 2 {
		t.Fatalf("reserve with 1 buffered, 5 waiters = %d, want 2", n)
	}
	s.beginClose()
	if _, _, ok := s.reserve(); ok {
		t.Fatal("reserve after Close began reported ok")
	}
}

// TestStateFIFOGroups: one message per group is out at a time; Ack lets
// the next go, Retry returns the queued ones for release.
func TestStateFIFOGroups(t *testing.T) {
	var s state
	s.init(10, true)
	a1, a2, a3, b1 := fifoEntry("a", "a1"), fifoEntry("a", "a2"), fifoEntry("a", "a3"), fifoEntry("b", "b1")
	s.received(0, []*entry{a1, a2, a3, b1})
	got := []*entry{takeNow(t, &s), takeNow(t, &s)}
	if got[0] != a1 || got[1] != b1 {
		t.Fatalf("took %s, %s; want a1, b1", got[0].md.id, got[1].md.id)
	}
	takeNone(t, &s)
	if rel := s.settled(a1, true); len(rel) != 0 {
		t.Fatalf("ack released %d", len(rel))
	}
	if e := takeNow(t, &s); e != a2 {
		t.Fatalf("after ack of a1 took %s, want a2", e.md.id)
	}
	rel := s.settled(a2, false)
	if len(rel) != 1 || rel[0] != a3 || !a3.done {
		t.Fatalf("retry of a2 released %v, want [a3] claimed", rel)
	}
	takeNone(t, &s)
	if s.holding() != 1 || s.active() != 1 {
		t.Fatalf("holding %d active %d, want b1 only", s.holding(), s.active())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.waitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitIdle with b1 unsettled = %v, want DeadlineExceeded", err)
	}
	s.settled(b1, true)
	if err := s.waitIdle(context.Background()); err != nil {
		t.Fatalf("waitIdle after b1 settled = %v", err)
	}
}

// TestStateDue: handed-out messages near their visibility timeout are
// extended; buffered ones are released, a FIFO group's together.
func TestStateDue(t *testing.T) {
	var s state
	s.init(10, true)
	now := time.Now()
	a1, a2, b1, b2 := fifoEntry("a", "a1"), fifoEntry("a", "a2"), fifoEntry("b", "b1"), fifoEntry("b", "b2")
	fresh := fifoEntry("c", "c1")
	for _, e := range []*entry{a1, a2, b1, b2} {
		e.visibleUntil.Store(now.Add(time.Second).UnixNano())
	}
	fresh.visibleUntil.Store(now.Add(time.Hour).UnixNano())
	s.received(0, []*entry{a1, a2, b1, b2, fresh})
	if e := takeNow(t, &s); e != a1 {
		t.Fatalf("took %s", e.md.id)
	}
	extend, release := s.due(now, 10*time.Second)
	if len(extend) != 1 || extend[0] != a1 {
		t.Errorf("extend %v, want [a1]", extend)
	}
	slices.SortFunc(release, func(x, y *entry) int { return strings.Compare(x.md.id, y.md.id) })
	if len(release) != 3 || release[0] != a2 || release[1] != b1 || release[2] != b2 {
		t.Fatalf("release %v, want a2 b1 b2", release)
	}
	if e := takeNow(t, &s); e != fresh {
		t.Fatalf("after due, took %s, want c1", e.md.id)
	}
	takeNone(t, &s)
	if rel := s.settled(a1, true); len(rel) != 0 {
		t.Errorf("ack of a1 released %v", rel)
	}
	if n, _, _ := s.reserve(); n != 0 {
		t.Errorf("reserve with no waiters = %d", n)
	}
	if s.buffered != 0 || len(s.groups) != 1 {
		t.Errorf("buffered %d groups %d, want 0 and only c", s.buffered, len(s.groups))
	}
}

// TestStateCloseWakesTake: a blocked take returns ErrClosed when Close
// begins, and takeBuffered hands back what was never handed out.
func TestStateCloseWakesTake(t *testing.T) {
	var s state
	s.init(10, false)
	res := make(chan error, 1)
	go func() {
		_, err := s.take(context.Background())
		res <- err
	}()
	deadline := time.Now().Add(time.Second)
	for {
		s.mu.Lock()
		w := s.waiters
		s.mu.Unlock()
		if w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("take never registered as a waiter")
		}
		time.Sleep(time.Millisecond)
	}
	s.received(0, nil)
	s.beginClose()
	if err := <-res; !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("blocked take = %v, want ErrClosed", err)
	}
	var s2 state
	s2.init(10, false)
	x, auto := fifoEntry("", "x"), &entry{md: meta{id: "auto", autoAck: true}}
	s2.received(0, []*entry{x, auto})
	if out, aa := s2.takeBuffered(); len(out) != 1 || out[0] != x || !x.done || len(aa) != 1 || aa[0] != auto {
		t.Fatalf("takeBuffered = %v, %v; want [x] claimed and [auto] apart", out, aa)
	}
}
