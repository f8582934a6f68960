package pool

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// TestGiveBackOfAWorkerThatExitedDoesNotHangStop: a worker replies and
// exits at once (die-after, a PHP worker hitting
// its own memory limit after replying, ...). The interleaving below is the
// real one when three goroutines queue on p.mu in this order:
//  1. the Exec that ran on w calls release(w, ok): goneMidJob is still
//     false, so ready() hands w to the oldest waiter B;
//  2. w's reaper (process already gone) sees w in state working and sets
//     goneMidJob: it now waits for w.released;
//  3. B, whose ctx ended just before the hand-over, gives w back; it used
//     to do so with p.ready(w), which ignored goneMidJob: w went idle,
//
// and the next take dropped it without sending w.released, so the reaper
// waited forever, w stayed in p.all, and Stop never returned. The give-back
// now goes through the same checks as after a job.
func TestGiveBackOfAWorkerThatExitedDoesNotHangStop(t *testing.T) {
	cfg := fakeConfig("ack", 1)
	cfg.DestroyTimeout = time.Second
	p, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Exec A holds the only worker.
	w, err := p.take(context.Background(), context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Exec B waits for a worker.
	bctx, bcancel := context.WithCancel(context.Background())
	berr := make(chan error, 1)
	go func() { _, err := p.Exec(bctx, job("b", "x")); berr <- err }()
	eventually(t, 2*time.Second, "B waiting", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.waiters) == 1
	})

	p.mu.Lock()
	go p.release(w, 1, true) // A got its reply           (queues 1st)
	time.Sleep(20 * time.Millisecond)
	_ = syscall.Kill(w.pid, syscall.SIGKILL) // w exits right after replying
	<-w.proc.exited()                        // its reaper   (queues 2nd)
	time.Sleep(20 * time.Millisecond)
	bcancel() //                                B gives up   (queues 3rd)
	time.Sleep(20 * time.Millisecond)
	p.mu.Unlock()

	if err := <-berr; !errors.Is(err, ErrNoWorker) {
		t.Fatalf("B: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // past exitGrace
	// Exec C: takes w from idle, finds it exited, drops it, gets a new one.
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if _, err := p.Exec(cctx, job("c", "x")); err != nil {
		t.Fatalf("C: %v", err)
	}
	var stuck []string
	p.mu.Lock()
	for _, x := range p.all {
		select {
		case <-x.proc.exited():
			stuck = append(stuck, fmt.Sprintf("pid %d state %s goneMidJob %v", x.pid, x.state, x.goneMidJob))
		default:
		}
	}
	p.mu.Unlock()
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(context.Background()) }()
	select {
	case <-stopped:
		if len(stuck) > 0 {
			t.Fatalf("reaped workers still in the pool: %v", stuck)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Stop has not returned after 5s (destroy_timeout 1s); reaped workers still in p.all: %v", stuck)
	}
}
