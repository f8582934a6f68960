package pipeline

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/internal/fakeworker"
	"github.com/pipevisor/pipevisor/pool"
)

// TestHelperProcess is the fake worker when this test binary is started
// by a pool under test.
func TestHelperProcess(t *testing.T) {
	if mode := os.Getenv(fakeworker.HelperEnv); mode != "" {
		os.Exit(fakeworker.Main(mode))
	}
}

// slowObserver takes its time over every fate, as a slow Settle would,
// and records whether a worker was held meanwhile.
type slowObserver struct {
	p     *pool.Pool
	delay time.Duration

	mu     sync.Mutex
	held   int // fates seen while a worker was working
	failed int
	seen   int
}

func (o *slowObserver) Observe(_ string, f Fate) {
	time.Sleep(o.delay)
	busy := false
	for _, w := range o.p.Workers() {
		busy = busy || w.State == "working"
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen++
	if busy {
		o.held++
	}
	if f.Failed {
		o.failed++
	}
}

// Jobs are settled after the pool let go of the worker: a worker never
// waits for a settlement (with pipelining too, one slot), and a slow
// settlement does not count against the exec_ttl of the next job.
func TestSettlingHoldsNoWorker(t *testing.T) {
	for _, pipelining := range []int{1, 4} {
		t.Run(fmt.Sprint("pipelining=", pipelining), func(t *testing.T) {
			pl, err := pool.New(context.Background(), pool.Config{
				Command:         fakeworker.HelperCommand(),
				Env:             map[string]string{fakeworker.HelperEnv: "slow"},
				NumWorkers:      1,
				Pipelining:      pipelining,
				AllocateTimeout: 5 * time.Second,
				DestroyTimeout:  5 * time.Second,
				Supervisor:      pool.Supervisor{ExecTTL: 100 * time.Millisecond, WatchTick: 50 * time.Millisecond},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pl.Stop(context.Background()) })
			q := memjobs.New("mem", memjobs.Config{}, nil)
			t.Cleanup(func() { _ = q.Close(context.Background()) })
			jobs := make([]consumer.Job, 8)
			for i := range jobs {
				jobs[i] = consumer.Job{ID: fmt.Sprint(i), Name: "j", Pipeline: "mem", Payload: []byte("20ms")}
			}
			if err := q.Publish(context.Background(), jobs); err != nil {
				t.Fatal(err)
			}
			obs := &slowObserver{p: pl, delay: 150 * time.Millisecond}
			p := New(Config{Name: "mem", Concurrency: 1, Pipelining: pipelining, Observer: obs}, q, pl, nil)
			start(t, p)
			deadline := time.Now().Add(10 * time.Second)
			for p.Stat(context.Background()).Acked < 8 {
				if time.Now().After(deadline) {
					t.Fatalf("not all acked: %+v", p.Stat(context.Background()))
				}
				time.Sleep(5 * time.Millisecond)
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if obs.held != 0 || obs.failed != 0 {
				t.Errorf("of %d settlements, %d held a worker and %d failed (exec_ttl counted the settlement)", obs.seen, obs.held, obs.failed)
			}
		})
	}
}

// With more slots than workers, a batch waiting for a worker when the
// pipeline stops goes back to the queue unstarted; the batch on the
// worker finishes.
func TestStopReleasesABatchWaitingForAWorker(t *testing.T) {
	pl, err := pool.New(context.Background(), pool.Config{
		Command:         fakeworker.HelperCommand(),
		Env:             map[string]string{fakeworker.HelperEnv: "slow"},
		NumWorkers:      1,
		Pipelining:      4,
		AllocateTimeout: 10 * time.Second,
		DestroyTimeout:  5 * time.Second,
		Supervisor:      pool.Supervisor{WatchTick: 50 * time.Millisecond},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pl.Stop(context.Background()) })
	q := memjobs.New("mem", memjobs.Config{}, nil)
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	jobs := make([]consumer.Job, 20)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprint(i), Name: "j", Pipeline: "mem", Payload: []byte("200ms")}
	}
	if err := q.Publish(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	p := New(Config{Name: "mem", Concurrency: 2, Pipelining: 4}, q, pl, nil)
	r := start(t, p)
	waitFor(t, "a batch running and one waiting", func() bool { return p.Stat(context.Background()).Active == 8 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	st := p.Stat(context.Background())
	qs, _ := q.Stat(context.Background())
	if st.Acked != 4 || st.Retried != 0 || qs.Ready != 16 {
		t.Errorf("after Stop: %d acked, %d retried, %d ready; want the running batch of 4 acked and 16 ready", st.Acked, st.Retried, qs.Ready)
	}
}
