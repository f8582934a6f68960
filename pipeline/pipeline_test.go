package pipeline

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
)

func ackExec(context.Context, frame.Payload) (frame.Payload, error) {
	return frame.Payload{}, nil // empty reply = ACK
}

func TestConcurrencyBound(t *testing.T) {
	const n, jobs = 3, 40
	fc := newFakeConsumer(jobs)
	for i := range jobs {
		fc.push(fmt.Sprint(i), 1, nil)
	}
	var inExec, maxInExec atomic.Int64
	gate := make(chan struct{})
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		cur := inExec.Add(1)
		defer inExec.Add(-1)
		for {
			old := maxInExec.Load()
			if cur <= old || maxInExec.CompareAndSwap(old, cur) {
				break
			}
		}
		<-gate
		return frame.Payload{}, nil
	})
	p := New(Config{Name: "p", Concurrency: n}, fc, ex, nil)
	start(t, p)

	waitFor(t, "all slots busy", func() bool { return inExec.Load() == n })
	if got := p.Stat(context.Background()).Active; got != n {
		t.Errorf("Active = %d with every slot busy, want %d", got, n)
	}
	if received, _ := fc.counts(); received != n {
		t.Errorf("received %d jobs with %d slots busy, want %d", received, n, n)
	}
	close(gate)
	for range jobs {
		if s := fc.next(t); s.Outcome.Action != consumer.Ack {
			t.Errorf("job %s: %v, want ack", s.ID, s.Outcome.Action)
		}
	}
	if got := maxInExec.Load(); got != n {
		t.Errorf("max jobs in Exec = %d, want %d", got, n)
	}
	if _, maxUnsettled := fc.counts(); maxUnsettled > n {
		t.Errorf("max received-unsettled = %d, want at most %d", maxUnsettled, n)
	}
	waitFor(t, "counters", func() bool { return p.Stat(context.Background()).Acked == jobs })
	if st := p.Stat(context.Background()); st.Active != 0 || st.Retried+st.Requeued+st.Dead != 0 {
		t.Errorf("Stat after all acked = %+v", st)
	}
}

func TestJobFrame(t *testing.T) {
	fc := newFakeConsumer(4)
	hdr := map[string][]string{"trace": {"abc"}}
	fc.push("job-1", 2, hdr)
	got := make(chan frame.Payload, 1)
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		got <- pl
		return frame.Payload{}, nil
	})
	start(t, New(Config{Name: "p"}, fc, ex, nil))
	fc.next(t)
	pl := <-got
	if string(pl.Body) != "body-job-1" {
		t.Errorf("body = %q", pl.Body)
	}
	want := frame.JobContext{
		ID: "job-1", Job: "App\\Job", Driver: "memory", Pipeline: "p",
		Headers: map[string][]string{"trace": {"abc"}, "x-attempt": {"2"}},
	}
	if jc := jobContext(t, pl); !reflect.DeepEqual(jc, want) {
		t.Errorf("context = %+v, want %+v", jc, want)
	}
	if len(hdr) != 1 {
		t.Errorf("the delivery's headers were modified: %v", hdr)
	}
}

func TestRetryThenAck(t *testing.T) {
	fc := newFakeConsumer(4)
	fc.push("j", 1, nil)
	var attempts []string
	var mu sync.Mutex
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		a := jobContext(t, pl).Headers[frame.AttemptHeader][0]
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
		if a == "1" {
			return frame.Payload{}, errors.New("worker error: db down")
		}
		return replyBody(t, frame.Reply{Type: frame.ReplyAck}), nil
	})
	p := New(Config{Name: "p", Retry: retry.Policy{Backoff: retry.Backoff{Initial: 250 * time.Millisecond}}, Rand: fixedRand}, fc, ex, nil)
	start(t, p)

	first := fc.next(t)
	if first.Outcome.Action != consumer.Retry || first.Outcome.Delay != 250*time.Millisecond ||
		!strings.Contains(first.Outcome.Reason, "db down") {
		t.Errorf("first outcome = %+v, want Retry(250ms) with the error", first.Outcome)
	}
	if second := fc.next(t); second.Outcome.Action != consumer.Ack || second.Attempt != 2 {
		t.Errorf("second settlement = %+v, want Ack of attempt 2", second)
	}
	mu.Lock()
	if !reflect.DeepEqual(attempts, []string{"1", "2"}) {
		t.Errorf("worker saw x-attempt %v, want [1 2]", attempts)
	}
	mu.Unlock()
	waitFor(t, "counters", func() bool {
		st := p.Stat(context.Background())
		return st.Acked == 1 && st.Retried == 1
	})
}

func TestMaxAttemptsDead(t *testing.T) {
	fc := newFakeConsumer(4)
	fc.push("j", 1, nil)
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		return replyBody(t, frame.Reply{Type: frame.ReplyNack, Data: frame.ReplyData{Message: "nope", Requeue: true}}), nil
	})
	// A retry: section caps what the worker decided (without one, NACK
	// with redelivery has no cap).
	p := New(Config{Name: "p", Retry: retry.Policy{MaxAttempts: 3, Backoff: retry.Backoff{Initial: time.Millisecond}, Configured: true}}, fc, ex, nil)
	start(t, p)
	for attempt := 1; attempt <= 3; attempt++ {
		s := fc.next(t)
		want := consumer.Retry
		if attempt == 3 {
			want = consumer.Dead
		}
		if s.Attempt != attempt || s.Outcome.Action != want {
			t.Fatalf("settlement %d = %+v, want %v of attempt %d", attempt, s, want, attempt)
		}
		if attempt == 3 && !strings.Contains(s.Outcome.Reason, "nope") {
			t.Errorf("dead reason = %q, want the NACK message", s.Outcome.Reason)
		}
	}
	waitFor(t, "counters", func() bool {
		st := p.Stat(context.Background())
		return st.Dead == 1 && st.Retried == 2 && st.Acked == 0
	})
}

// blockingExec blocks every job until release is closed or its ctx is
// done; started receives the id of each job that entered Exec.
type blockingExec struct {
	started chan string
	release chan struct{}
}

func newBlockingExec() *blockingExec {
	return &blockingExec{started: make(chan string, 16), release: make(chan struct{})}
}

func (b *blockingExec) Exec(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
	b.started <- string(pl.Body)
	select {
	case <-b.release:
		return frame.Payload{}, nil
	case <-ctx.Done():
		return frame.Payload{}, fmt.Errorf("worker killed: %w", context.Cause(ctx))
	}
}

func (b *blockingExec) waitStarted(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-b.started:
		case <-time.After(5 * time.Second):
			t.Fatal("job did not start within 5s")
		}
	}
}

func TestStopReleasesInterruptedJobs(t *testing.T) {
	fc := newFakeConsumer(8)
	fc.holdReleased = true
	for i := range 4 {
		fc.push(fmt.Sprint(i), 1, nil)
	}
	ex := newBlockingExec()
	p := New(Config{Name: "p", Concurrency: 2}, fc, execFunc(ex.Exec), nil)
	r := start(t, p)
	ex.waitStarted(t, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Run = %v, want nil after Stop", err)
	}
	for range 2 {
		s := fc.next(t)
		if s.Outcome.Action != consumer.Release || s.Outcome.Delay != 0 || s.Attempt != 1 {
			t.Errorf("interrupted job settled %+v, want Release without delay", s)
		}
	}
	if received, _ := fc.counts(); received != 2 {
		t.Errorf("received %d jobs, want 2: nothing is taken after Stop", received)
	}
	st := p.Stat(context.Background())
	if st.Active != 0 || st.Retried != 0 || st.Dead != 0 || st.Consuming {
		t.Errorf("Stat after Stop = %+v", st)
	}
	if err := p.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Run after Stop = %v, want ErrStopped", err)
	}
}

func TestStopWaitsForRunningJobs(t *testing.T) {
	fc := newFakeConsumer(8)
	for i := range 3 {
		fc.push(fmt.Sprint(i), 1, nil)
	}
	ex := newBlockingExec()
	p := New(Config{Name: "p", Concurrency: 1}, fc, execFunc(ex.Exec), nil)
	r := start(t, p)
	ex.waitStarted(t, 1)

	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(context.Background()) }()
	// Stop must not return while the job runs; give it a moment to try.
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v while a job was running", err)
	case <-time.After(30 * time.Millisecond):
	}
	close(ex.release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Stop = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return after the running job finished")
	}
	if s := fc.next(t); s.Outcome.Action != consumer.Ack {
		t.Errorf("running job settled %+v, want Ack", s)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	if received, _ := fc.counts(); received != 1 {
		t.Errorf("received %d jobs, want 1", received)
	}
	if len(fc.queue) != 2 {
		t.Errorf("%d jobs left on the broker, want 2", len(fc.queue))
	}
}

func TestRunContextCancelInterrupts(t *testing.T) {
	fc := newFakeConsumer(4)
	fc.holdReleased = true
	fc.push("j", 1, nil)
	ex := newBlockingExec()
	p := New(Config{Name: "p"}, fc, execFunc(ex.Exec), nil)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- p.Run(ctx) }()
	ex.waitStarted(t, 1)
	cancel()
	select {
	case err := <-res:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its ctx was cancelled")
	}
	if s := fc.next(t); s.Outcome.Action != consumer.Release {
		t.Errorf("interrupted job settled %+v, want Release", s)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("Stop after Run returned = %v", err)
	}
}

func TestStopBeforeRun(t *testing.T) {
	p := New(Config{Name: "p"}, newFakeConsumer(1), execFunc(ackExec), nil)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if err := p.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Run after Stop = %v, want ErrStopped", err)
	}
	if err := p.Pause(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Pause after Stop = %v, want ErrStopped", err)
	}
}

func TestRunTwice(t *testing.T) {
	fc := newFakeConsumer(1)
	p := New(Config{Name: "p"}, fc, execFunc(ackExec), nil)
	start(t, p)
	waitFor(t, "running", func() bool { return p.Check() == nil })
	if err := p.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

func TestNoWorkerReleasesAndRests(t *testing.T) {
	fc := newFakeConsumer(16)
	fc.holdReleased = true
	for i := range 10 {
		fc.push(fmt.Sprint(i), 2, nil)
	}
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		return frame.Payload{}, fmt.Errorf("%w: allocate timeout", pool.ErrNoWorker)
	})
	p := New(Config{Name: "p", Concurrency: 1}, fc, ex, nil)
	start(t, p)
	s := fc.next(t)
	if s.Outcome.Action != consumer.Release || s.Outcome.Delay != NoWorkerDelay || s.Attempt != 2 {
		t.Errorf("settlement = %+v, want Release after NoWorkerDelay", s)
	}
	time.Sleep(20 * time.Millisecond)
	if received, _ := fc.counts(); received > 2 {
		t.Errorf("received %d jobs within 20ms of a no-worker release, want the slot to rest", received)
	}
	if st := p.Stat(context.Background()); st.Retried != 0 || st.Dead != 0 {
		t.Errorf("Stat = %+v: a release must not count as a retry", st)
	}
}
