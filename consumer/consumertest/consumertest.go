// Package consumertest is the conformance suite every broker driver runs
// from its own tests:
//
//	func TestConformance(t *testing.T) {
//		consumertest.Run(t, consumertest.Features{Delay: true}, func(t *testing.T) consumertest.Pair {
//			q := newQueueOnAFreshName(t) // registers its own t.Cleanup
//			return consumertest.Pair{Consumer: q, Publisher: q}
//		})
//	}
//
// The suite is broker-agnostic: it only uses consumer.Consumer,
// consumer.Publisher and the optional hooks of Pair, and it waits with
// deadlines (Features.Timeout, several seconds by default) so that slow
// brokers pass. Features switches on the checks a broker can honour.
//
// Every driver must show, whatever its Features:
//   - published jobs arrive with ID, Job name, Body (any bytes) and every
//     published header intact, Attempt 1 on the first delivery; a batch
//     published in one call is all visible;
//   - Ack removes the job (nothing within Features.Quiet, nor after a
//     reopen); Dead does not redeliver and, with Pair.DeadIDs, the job shows
//     up in the dead target; Retry, Requeue and Release redeliver the same
//     job, Requeue with its headers merged (Outcome keys replace);
//   - a second Settle returns consumer.ErrAlreadySettled and has no effect;
//   - Receive returns an error matching ctx.Err() (errors.Is) when its ctx
//     ends, and consumer.ErrClosed after Close, also for a Receive that was
//     blocked when Close was called; a cancelled Receive loses no job;
//   - Close waits for deliveries already handed out: they can be settled
//     (Settle returns nil) until Close's ctx is done, and Close then returns
//     nil; a job published but not handed out survives Close (checked with
//     Pair.Reopen); a second Close returns nil;
//   - concurrent publishers and receivers see every job exactly once.
//
// A driver whose Consumer implements consumer.ReadyReceiver must also show
// that ReceiveReady hands out jobs of a backlog drained as a pipelined
// slot does (Receive one, then ReceiveReady for the batch behind it): at
// least one over the run, never more than max per call, appended to dst,
// each job once and intact, and each can be acked (the case is skipped
// otherwise). A driver need not fetch for a ReceiveReady alone.
package consumertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Features says what a driver can do; the suite runs the matching checks.
// The zero value runs only the checks every driver must pass.
type Features struct {
	// Delay: Job.Delay and Outcome.Delay are honoured: a message is not
	// handed out before its delay has passed.
	Delay bool
	// Priority: from a backlog, jobs with a lower Job.Priority number are
	// handed out first.
	Priority bool
	// KeyOrder: jobs with the same Key are handed out one at a time in
	// publish order; the next one only after the previous one was acked
	// or dead-lettered, and a retried one comes back before its later
	// siblings.
	KeyOrder bool
	// RetryPosition: Retry with no delay puts the message back at its
	// original position, before messages published after it.
	RetryPosition bool
	// AttemptCount: Retry and Requeue redeliver with Attempt+1.
	AttemptCount bool
	// ReleaseKeepsAttempt: Release redelivers with the same Attempt.
	ReleaseKeepsAttempt bool
	// AutoAck: Job.AutoAck messages are settled on receipt and never come
	// back, even when the delivery is not settled.
	AutoAck bool
	// Serial runs the cases one after another instead of in parallel.
	Serial bool

	// Timeout bounds every wait for a message that must arrive
	// (default 10s).
	Timeout time.Duration
	// Quiet is how long the suite waits to be sure that no message
	// arrives (default 500ms).
	Quiet time.Duration
	// RetryDelay is the delay used by the delay checks (default 300ms);
	// a broker with one-second granularity should use a few seconds.
	RetryDelay time.Duration
}

func (f *Features) defaults() {
	if f.Timeout <= 0 {
		f.Timeout = 10 * time.Second
	}
	if f.Quiet <= 0 {
		f.Quiet = 500 * time.Millisecond
	}
	if f.RetryDelay <= 0 {
		f.RetryDelay = 300 * time.Millisecond
	}
}

// Pair is a fresh consumer and publisher on one fresh, unique queue (or
// topic, or pipeline) with nothing on it. The function that makes it
// registers its own cleanup (t.Cleanup); the suite closes Consumer itself
// before that cleanup runs, and closes what Reopen returns.
type Pair struct {
	// Consumer receives from the queue.
	Consumer consumer.Consumer
	// Publisher publishes to the same queue; the suite leaves
	// Job.Pipeline empty.
	Publisher consumer.Publisher
	// Reopen, when set, returns a new Consumer on the same queue. The
	// suite calls it only after Consumer was closed, to check that acked
	// messages do not come back and unsettled ones are not lost.
	Reopen func(t *testing.T) consumer.Consumer
	// DeadIDs, when set, returns the IDs of the messages currently in the
	// queue's dead-letter target.
	DeadIDs func(ctx context.Context) ([]string, error)
}

// Run runs the conformance cases against fresh pairs from newPair, as
// subtests of t (in parallel unless f.Serial), and returns when all are
// done. newPair must be safe for concurrent use.
func Run(t *testing.T, f Features, newPair func(t *testing.T) Pair) {
	t.Helper()
	f.defaults()
	t.Run("conformance", func(t *testing.T) {
		for _, c := range allCases() {
			if c.needs != nil && !c.needs(f) {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				if !f.Serial {
					t.Parallel()
				}
				c.run(newHarness(t, f, newPair))
			})
		}
	})
}

// harness is the state of one case: its pair and helpers that fail the
// test with a clear message.
type harness struct {
	t      *testing.T
	f      Features
	pair   Pair
	prefix string
	n      atomic.Int64
}

func newHarness(t *testing.T, f Features, newPair func(t *testing.T) Pair) *harness {
	t.Helper()
	p := newPair(t)
	if p.Consumer == nil || p.Publisher == nil {
		t.Fatal("consumertest: newPair returned a Pair without Consumer or Publisher")
	}
	h := &harness{
		t:      t,
		f:      f,
		pair:   p,
		prefix: rand.Text()[:12],
	}
	t.Cleanup(func() { h.closeQuietly(p.Consumer) })
	return h
}

// closeQuietly closes c at the end of a case; a failed case may leave
// deliveries unsettled, so Close's error carries no information then.
func (h *harness) closeQuietly(c consumer.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// job returns a job with a unique ID, a fixed name and a body made from
// the ID.
func (h *harness) job() consumer.Job {
	id := h.prefix + "-" + strconv.FormatInt(h.n.Add(1), 10)
	return consumer.Job{
		ID:      id,
		Name:    "consumertest.Job",
		Payload: []byte("body of " + id),
	}
}

func (h *harness) jobs(n int) []consumer.Job {
	out := make([]consumer.Job, n)
	for i := range out {
		out[i] = h.job()
	}
	return out
}

func (h *harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), h.f.Timeout)
}

func (h *harness) publish(jobs ...consumer.Job) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	if err := h.pair.Publisher.Publish(ctx, jobs); err != nil {
		h.t.Fatalf("Publish(%d jobs): %v", len(jobs), err)
	}
}

// receive waits up to Timeout for a delivery from c.
func (h *harness) receiveFrom(c consumer.Consumer) *consumer.Delivery {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	d, err := c.Receive(ctx)
	if err != nil {
		h.t.Fatalf("Receive: %v (waited up to %v)", err, h.f.Timeout)
	}
	if d == nil {
		h.t.Fatal("Receive returned a nil delivery and no error")
	}
	return d
}

func (h *harness) receive() *consumer.Delivery {
	h.t.Helper()
	return h.receiveFrom(h.pair.Consumer)
}

// nothingFrom fails when c hands out anything within Quiet.
func (h *harness) nothingFrom(c consumer.Consumer, why string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.f.Quiet)
	defer cancel()
	d, err := c.Receive(ctx)
	if err == nil {
		h.t.Fatalf("%s: got job %q (attempt %d), want nothing", why, d.ID, d.Attempt)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		h.t.Fatalf("%s: Receive returned %v, want a context deadline error", why, err)
	}
}

func (h *harness) nothing(why string) {
	h.t.Helper()
	h.nothingFrom(h.pair.Consumer, why)
}

func (h *harness) settle(d *consumer.Delivery, o consumer.Outcome) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	if err := d.Settle(ctx, o); err != nil {
		h.t.Fatalf("Settle(%s) of job %q: %v", o.Action, d.ID, err)
	}
}

func (h *harness) ack(d *consumer.Delivery) {
	h.t.Helper()
	h.settle(d, consumer.Outcome{Action: consumer.Ack})
}

// closeConsumer closes the pair's consumer and fails on error.
func (h *harness) closeConsumer() {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	if err := h.pair.Consumer.Close(ctx); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
}

// reopen closes the pair's consumer and returns a new one on the same
// queue, or nil when the driver cannot reopen.
func (h *harness) reopen() consumer.Consumer {
	h.t.Helper()
	if h.pair.Reopen == nil {
		return nil
	}
	h.closeConsumer()
	c := h.pair.Reopen(h.t)
	if c == nil {
		h.t.Fatal("Reopen returned a nil Consumer")
	}
	h.t.Cleanup(func() { h.closeQuietly(c) })
	return c
}

// same fails unless d carries the job j: ID, name and body intact and
// every published header present with its values.
func (h *harness) same(d *consumer.Delivery, j consumer.Job) {
	h.t.Helper()
	if d.ID != j.ID {
		h.t.Fatalf("got job id %q, want %q", d.ID, j.ID)
	}
	if d.Job != j.Name {
		h.t.Errorf("job %q: name %q, want %q", j.ID, d.Job, j.Name)
	}
	if string(d.Body) != string(j.Payload) {
		h.t.Errorf("job %q: body %q, want %q", j.ID, d.Body, j.Payload)
	}
	if err := hasHeaders(d.Headers, j.Headers); err != nil {
		h.t.Errorf("job %q: %v", j.ID, err)
	}
}

// hasHeaders reports whether got holds every key of want with the same
// values; drivers may add headers of their own.
func hasHeaders(got, want map[string][]string) error {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			return fmt.Errorf("header %q missing (headers %v)", k, got)
		}
		if !slices.Equal(g, want[k]) {
			return fmt.Errorf("header %q = %q, want %q", k, g, want[k])
		}
	}
	return nil
}

// waitDead polls DeadIDs until id shows up or Timeout passes.
func (h *harness) waitDead(id string) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last []string
	for {
		ids, err := h.pair.DeadIDs(ctx)
		if err == nil && slices.Contains(ids, id) {
			return
		}
		if err == nil {
			last = ids
		}
		select {
		case <-ctx.Done():
			h.t.Fatalf("job %q not in the dead target after %v (last error %v, ids %q)", id, h.f.Timeout, err, last)
		case <-tick.C:
		}
	}
}
