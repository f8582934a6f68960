package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Jobs handed to an opened pool wait for Start's workers, as they wait
// for a busy pool, and run once the workers answered their handshake.
func TestExecBeforeStartWaitsForTheWorkers(t *testing.T) {
	checkLeaks(t)
	p, err := Open(fakeConfig("echo", 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	var wg sync.WaitGroup
	outs := make([]string, 3)
	for i := range outs {
		wg.Go(func() { outs[i] = string(run(t, p, job("early", "body")).Body) })
	}
	eventually(t, 2*time.Second, "three Execs to wait", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.waiters) == 3
	})
	if ws := p.Workers(); len(ws) != 0 {
		t.Fatalf("workers before Start: %+v", ws)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	wg.Wait()
	for i, out := range outs {
		if out != "body" {
			t.Fatalf("job %d replied %q, want the echo", i, out)
		}
	}
	if err := p.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Start: %v, want ErrClosed", err)
	}
}

// Stop of a pool that never started returns at once and releases the jobs
// waiting for a worker with ErrClosed; Start afterwards starts nothing.
func TestStopBeforeStart(t *testing.T) {
	checkLeaks(t)
	p, err := Open(fakeConfig("echo", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := p.Exec(context.Background(), job("waits", "x"))
		errc <- err
	}()
	eventually(t, 2*time.Second, "the Exec to wait", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.waiters) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiting Exec: %v, want ErrClosed", err)
	}
	if err := p.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Stop: %v, want ErrClosed", err)
	}
	if ws := p.Workers(); len(ws) != 0 {
		t.Fatalf("workers after Start-after-Stop: %+v", ws)
	}
}
