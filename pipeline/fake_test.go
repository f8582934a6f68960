package pipeline

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/internal/exectest"
)

// settled is one settlement seen by the fake consumer.
type settled struct {
	ID      string
	Attempt int
	Outcome consumer.Outcome
}

// fakeConsumer is an in-memory queue. Retry and Requeue redeliver at once
// with Attempt+1 (the delay is recorded, not waited for); Release
// redelivers with the same attempt unless the consumer is told to hold
// released jobs.
type fakeConsumer struct {
	queue   chan *consumer.Delivery
	closed  chan struct{}
	settles chan settled

	mu           sync.Mutex
	received     int
	unsettled    int
	maxUnsettled int
	holdReleased bool
	closeOnce    sync.Once
	// whenFinal, when set before pushing, is each delivery's SetWhenFinal.
	whenFinal func(fn func(error))
}

func newFakeConsumer(capacity int) *fakeConsumer {
	return &fakeConsumer{
		queue:   make(chan *consumer.Delivery, capacity),
		closed:  make(chan struct{}),
		settles: make(chan settled, capacity*8),
	}
}

func (f *fakeConsumer) push(id string, attempt int, headers map[string][]string) {
	d := &consumer.Delivery{
		ID: id, Job: "App\\Job", Pipeline: "p", Driver: "memory",
		Headers: headers, Body: []byte("body-" + id), Attempt: attempt,
	}
	d.SetSettle(func(ctx context.Context, o consumer.Outcome) error {
		f.mu.Lock()
		f.unsettled--
		hold := f.holdReleased
		f.mu.Unlock()
		f.settles <- settled{ID: d.ID, Attempt: d.Attempt, Outcome: o}
		switch o.Action {
		case consumer.Retry, consumer.Requeue:
			f.push(d.ID, d.Attempt+1, d.Headers)
		case consumer.Release:
			if !hold {
				f.push(d.ID, d.Attempt, d.Headers)
			}
		}
		return nil
	})
	if f.whenFinal != nil {
		d.SetWhenFinal(f.whenFinal)
	}
	f.queue <- d
}

func (f *fakeConsumer) Receive(ctx context.Context) (*consumer.Delivery, error) {
	select {
	case <-f.closed:
		return nil, consumer.ErrClosed
	default:
	}
	select {
	case d := <-f.queue:
		f.mu.Lock()
		f.received++
		f.unsettled++
		f.maxUnsettled = max(f.maxUnsettled, f.unsettled)
		f.mu.Unlock()
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-f.closed:
		return nil, consumer.ErrClosed
	}
}

func (f *fakeConsumer) Close(context.Context) error {
	f.closeOnce.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeConsumer) counts() (received, maxUnsettled int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received, f.maxUnsettled
}

// next returns the next settlement or fails the test after a deadline.
func (f *fakeConsumer) next(t *testing.T) settled {
	t.Helper()
	select {
	case s := <-f.settles:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no settlement within 5s")
		return settled{}
	}
}

// execFunc adapts a function that runs one job to Executor.
type execFunc = exectest.Func

// replyBody encodes a worker reply.
func replyBody(t *testing.T, r frame.Reply) frame.Payload {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return frame.Payload{Body: b}
}

// jobContext decodes the context JSON of a job frame.
func jobContext(t *testing.T, pl frame.Payload) frame.JobContext {
	t.Helper()
	var jc frame.JobContext
	if err := json.Unmarshal(pl.Context, &jc); err != nil {
		t.Errorf("context JSON %q: %v", pl.Context, err)
	}
	return jc
}

// running is a pipeline started by start.
type running struct {
	done chan struct{} // closed when Run returned
	err  error         // Run's result, valid after done
}

// wait returns Run's result or fails the test after 5s.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s")
		return nil
	}
}

// start runs p in a goroutine; the pipeline is stopped and Run awaited at
// the end of the test.
func start(t *testing.T, p *Pipeline) *running {
	t.Helper()
	r := &running{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = p.Run(context.Background())
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Stop(ctx)
		r.wait(t)
	})
	return r
}

// waitFor polls cond until it holds or fails the test after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fixedRand returns 0.5: no jitter.
func fixedRand() float64 { return 0.5 }
