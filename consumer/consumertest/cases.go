package consumertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// testCase is one conformance check; needs, when set, says which
// Features it requires.
type testCase struct {
	name  string
	needs func(Features) bool
	run   func(h *harness)
}

// allCases lists every case in the order Run starts them.
func allCases() []testCase {
	return []testCase{
		{name: "PublishReceive", run: publishReceive},
		{name: "PublishBatch", run: publishBatch},
		{name: "AckRemoves", run: ackRemoves},
		{name: "RetryNow", run: retryNow},
		{name: "RetryPosition", needs: func(f Features) bool { return f.RetryPosition }, run: retryPosition},
		{name: "RetryDelay", run: retryDelay},
		{name: "Requeue", run: requeue},
		{name: "Dead", run: dead},
		{name: "Release", run: release},
		{name: "SettleTwice", run: settleTwice},
		{name: "ReceiveAfterClose", run: receiveAfterClose},
		{name: "ReceiveCancel", run: receiveCancel},
		{name: "CloseInFlight", run: closeInFlight},
		{name: "KeyOrder", needs: func(f Features) bool { return f.KeyOrder }, run: keyOrder},
		{name: "Priority", needs: func(f Features) bool { return f.Priority }, run: priority},
		{name: "PublishDelay", needs: func(f Features) bool { return f.Delay }, run: publishDelay},
		{name: "AutoAck", needs: func(f Features) bool { return f.AutoAck }, run: autoAck},
		{name: "Concurrent", run: concurrent},
		{name: "ReceiveReady", run: receiveReady}, // skipped unless the Consumer is a consumer.ReadyReceiver
	}
}

// publishReceive: jobs published one by one come out intact, attempt 1.
func publishReceive(h *harness) {
	jobs := h.jobs(10)
	// PHP serialize() output carries NUL bytes; workers may send any bytes.
	jobs[0].Payload = []byte("O:8:\"App\\Mail\":1:{s:7:\"\x00*\x00name\";s:1:\"x\";}\xff\xfe\x00")
	jobs[1].Headers = map[string][]string{"x-one": {"1"}, "x-multi": {"a", "b"}}
	jobs[2].Name = `App\Jobs\SendMail`
	for _, j := range jobs {
		h.publish(j)
	}
	want := make(map[string]consumer.Job, len(jobs))
	for _, j := range jobs {
		want[j.ID] = j
	}
	for range jobs {
		d := h.receive()
		j, ok := want[d.ID]
		if !ok {
			h.t.Fatalf("received unknown or duplicate job %q", d.ID)
		}
		delete(want, d.ID)
		h.same(d, j)
		if d.Attempt != 1 {
			h.t.Errorf("job %q: first delivery has attempt %d, want 1", d.ID, d.Attempt)
		}
		h.ack(d)
	}
	h.nothing("after every job was acked")
}

// publishBatch: every job of one Publish call is visible.
func publishBatch(h *harness) {
	jobs := h.jobs(100)
	h.publish(jobs...)
	want := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		want[j.ID] = true
	}
	for range jobs {
		d := h.receive()
		if !want[d.ID] {
			h.t.Fatalf("received unknown or duplicate job %q", d.ID)
		}
		delete(want, d.ID)
		h.ack(d)
	}
	h.nothing("after the batch was acked")
}

// ackRemoves: an acked job never comes back, not even after a reopen.
func ackRemoves(h *harness) {
	jobs := h.jobs(3)
	h.publish(jobs...)
	for range jobs {
		h.ack(h.receive())
	}
	h.nothing("after ack")
	if c := h.reopen(); c != nil {
		h.nothingFrom(c, "after ack and reopen")
	}
}

// retryNow: Retry(0) redelivers the same job, with Attempt+1.
func retryNow(h *harness) {
	j := h.job()
	j.Headers = map[string][]string{"x-h": {"v"}}
	h.publish(j)
	d := h.receive()
	h.same(d, j)
	h.settle(d, consumer.Outcome{Action: consumer.Retry})
	d2 := h.receive()
	h.same(d2, j)
	if h.f.AttemptCount && d2.Attempt != d.Attempt+1 {
		h.t.Errorf("after Retry: attempt %d, want %d", d2.Attempt, d.Attempt+1)
	}
	h.ack(d2)
	h.nothing("after the retried job was acked")
}

// retryPosition: Retry(0) comes back before a job published after it.
func retryPosition(h *harness) {
	a, b := h.job(), h.job()
	h.publish(a)
	h.publish(b)
	d := h.receive()
	h.same(d, a)
	h.settle(d, consumer.Outcome{Action: consumer.Retry})
	d2 := h.receive()
	h.same(d2, a)
	h.ack(d2)
	d3 := h.receive()
	h.same(d3, b)
	h.ack(d3)
}

// retryDelay: Retry(d) redelivers, and not before d when Features.Delay.
func retryDelay(h *harness) {
	j := h.job()
	h.publish(j)
	d := h.receive()
	start := time.Now()
	h.settle(d, consumer.Outcome{Action: consumer.Retry, Delay: h.f.RetryDelay})
	d2 := h.receive()
	if el := time.Since(start); h.f.Delay && el < h.f.RetryDelay {
		h.t.Errorf("Retry(%v): redelivered after %v", h.f.RetryDelay, el)
	}
	h.same(d2, j)
	if h.f.AttemptCount && d2.Attempt != d.Attempt+1 {
		h.t.Errorf("after Retry(%v): attempt %d, want %d", h.f.RetryDelay, d2.Attempt, d.Attempt+1)
	}
	h.ack(d2)
	h.nothing("after the retried job was acked")
}

// requeue: Requeue(d, headers) redelivers with the headers merged.
func requeue(h *harness) {
	j := h.job()
	j.Headers = map[string][]string{"x-keep": {"1"}, "x-change": {"old"}}
	h.publish(j)
	d := h.receive()
	var delay time.Duration
	if h.f.Delay {
		delay = h.f.RetryDelay
	}
	start := time.Now()
	h.settle(d, consumer.Outcome{
		Action:  consumer.Requeue,
		Delay:   delay,
		Headers: map[string][]string{"x-change": {"new"}, "x-added": {"a", "b"}},
		Reason:  "consumertest: requeue",
	})
	d2 := h.receive()
	if el := time.Since(start); el < delay {
		h.t.Errorf("Requeue(%v): redelivered after %v", delay, el)
	}
	h.same(d2, consumer.Job{ID: j.ID, Name: j.Name, Payload: j.Payload,
		Headers: map[string][]string{"x-keep": {"1"}, "x-change": {"new"}, "x-added": {"a", "b"}}})
	if h.f.AttemptCount && d2.Attempt != d.Attempt+1 {
		h.t.Errorf("after Requeue: attempt %d, want %d", d2.Attempt, d.Attempt+1)
	}
	h.ack(d2)
	h.nothing("after the requeued job was acked")
}

// dead: Dead does not redeliver, and the job lands in the dead target.
func dead(h *harness) {
	j := h.job()
	h.publish(j)
	d := h.receive()
	h.settle(d, consumer.Outcome{Action: consumer.Dead, Reason: "consumertest: dead"})
	h.nothing("after Dead")
	if h.pair.DeadIDs != nil {
		h.waitDead(j.ID)
	}
	if c := h.reopen(); c != nil {
		h.nothingFrom(c, "after Dead and reopen")
	}
}

// release: Release redelivers, keeping the attempt where the driver can.
func release(h *harness) {
	j := h.job()
	h.publish(j)
	d := h.receive()
	h.settle(d, consumer.Outcome{Action: consumer.Release})
	d2 := h.receive()
	h.same(d2, j)
	if h.f.ReleaseKeepsAttempt && d2.Attempt != d.Attempt {
		h.t.Errorf("after Release: attempt %d, want %d", d2.Attempt, d.Attempt)
	}
	h.ack(d2)
	h.nothing("after the released job was acked")
}

// settleTwice: only the first Settle counts.
func settleTwice(h *harness) {
	h.publish(h.job())
	d := h.receive()
	h.ack(d)
	ctx, cancel := h.ctx()
	defer cancel()
	for _, a := range []consumer.Action{consumer.Ack, consumer.Retry, consumer.Requeue, consumer.Dead, consumer.Release} {
		if err := d.Settle(ctx, consumer.Outcome{Action: a}); !errors.Is(err, consumer.ErrAlreadySettled) {
			h.t.Errorf("second Settle(%s) = %v, want ErrAlreadySettled", a, err)
		}
	}
	h.nothing("after a second Settle")
}

// receiveAfterClose: Close wakes a blocked Receive with ErrClosed, later
// Receive calls return ErrClosed, and Close is idempotent.
func receiveAfterClose(h *harness) {
	ctx, cancel := h.ctx()
	defer cancel()
	res := make(chan error, 1)
	go func() {
		_, err := h.pair.Consumer.Receive(ctx)
		res <- err
	}()
	h.closeConsumer()
	select {
	case err := <-res:
		if !errors.Is(err, consumer.ErrClosed) {
			h.t.Errorf("Receive blocked during Close returned %v, want ErrClosed", err)
		}
	case <-time.After(h.f.Timeout + time.Second):
		h.t.Fatal("Receive still blocked after Close")
	}
	h.closeConsumer()
	if _, err := h.pair.Consumer.Receive(ctx); !errors.Is(err, consumer.ErrClosed) {
		h.t.Errorf("Receive after Close = %v, want ErrClosed", err)
	}
}

// receiveCancel: Receive returns the context error on deadline and on
// cancel, and a cancelled Receive loses no message.
func receiveCancel(h *harness) {
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	if _, err := h.pair.Consumer.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		h.t.Fatalf("Receive on an empty queue with a deadline = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > h.f.Timeout {
		h.t.Errorf("Receive returned %v after its deadline", el)
	}

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		d, err := h.pair.Consumer.Receive(ctx)
		if err == nil {
			err = fmt.Errorf("got job %q from an empty queue", d.ID)
		}
		res <- err
	}()
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			h.t.Errorf("cancelled Receive = %v, want context.Canceled", err)
		}
	case <-time.After(h.f.Timeout):
		h.t.Fatal("Receive still blocked after its context was cancelled")
	}

	j := h.job()
	h.publish(j)
	d := h.receive()
	h.same(d, j)
	h.ack(d)
}

// closeInFlight: a delivery handed out before Close can be settled while
// Close waits for it; the job that was not handed out is not lost.
func closeInFlight(h *harness) {
	a, b := h.job(), h.job()
	h.publish(a, b)
	d := h.receive()
	ctx, cancel := h.ctx()
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- h.pair.Consumer.Close(ctx) }()
	h.ack(d)
	select {
	case err := <-res:
		if err != nil {
			h.t.Fatalf("Close with the only delivery settled = %v, want nil", err)
		}
	case <-time.After(h.f.Timeout + time.Second):
		h.t.Fatal("Close did not return after the delivery was settled")
	}
	c := h.reopen()
	if c == nil {
		return
	}
	other := b
	if d.ID == b.ID {
		other = a
	}
	d2 := h.receiveFrom(c)
	h.same(d2, other)
	h.ack(d2)
	h.nothingFrom(c, "after both jobs were acked")
}

// keyOrder: jobs of one key come out one at a time, in publish order, and
// a retried job comes back before its later siblings.
func keyOrder(h *harness) {
	const keys, per = 3, 4
	type pos struct{ key, i int }
	where := map[string]pos{}
	var jobs []consumer.Job
	// Key by key, so that a driver which ignores keys hands out a second
	// job of key-0 while the first one is still held.
	for k := range keys {
		for i := range per {
			j := h.job()
			j.Key = fmt.Sprintf("key-%d", k)
			where[j.ID] = pos{k, i}
			jobs = append(jobs, j)
		}
	}
	h.publish(jobs...)

	var next [keys]int
	var retried [keys]bool
	var held []*consumer.Delivery // handed out, unsettled, in receive order
	deadline := time.Now().Add(3 * h.f.Timeout)
	for done := 0; done < keys*per; {
		if time.Now().After(deadline) {
			h.t.Fatalf("key order: only %d of %d jobs done in %v", done, keys*per, 3*h.f.Timeout)
		}
		if len(held) < keys {
			wait := h.f.Timeout
			if len(held) > 0 {
				wait = h.f.Quiet
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			d, err := h.pair.Consumer.Receive(ctx)
			cancel()
			switch {
			case err == nil:
				p, ok := where[d.ID]
				if !ok {
					h.t.Fatalf("received unknown job %q", d.ID)
				}
				for _, o := range held {
					if o.Key == d.Key {
						h.t.Fatalf("job %d of %s handed out while %q of the same key is unsettled", p.i, d.Key, o.ID)
					}
				}
				if p.i != next[p.key] {
					h.t.Fatalf("%s: got job %d, want job %d", d.Key, p.i, next[p.key])
				}
				held = append(held, d)
				continue
			case !errors.Is(err, context.DeadlineExceeded):
				h.t.Fatalf("Receive: %v", err)
			case len(held) == 0:
				h.t.Fatalf("key order: nothing handed out in %v with %d jobs left", wait, keys*per-done)
			}
		}
		d := held[0]
		held = held[1:]
		p := where[d.ID]
		if p.i == 0 && !retried[p.key] {
			retried[p.key] = true
			h.settle(d, consumer.Outcome{Action: consumer.Retry})
			continue
		}
		h.ack(d)
		next[p.key]++
		done++
	}
	h.nothing("after every keyed job was acked")
}

// priority: from a backlog, the more urgent (lower number) jobs come first.
func priority(h *harness) {
	low, high := h.jobs(5), h.jobs(5)
	urgent := map[string]bool{}
	for i := range low {
		low[i].Priority = 20
		high[i].Priority = 1
		urgent[high[i].ID] = true
	}
	h.publish(low...)
	h.publish(high...)
	for i := range len(low) + len(high) {
		d := h.receive()
		if i < len(high) && !urgent[d.ID] {
			h.t.Errorf("delivery %d is job %q of priority 20 while priority-1 jobs wait", i, d.ID)
		}
		h.ack(d)
	}
}

// publishDelay: a job published with a delay is not handed out before it,
// and does not hold back a job without delay.
func publishDelay(h *harness) {
	a, b := h.job(), h.job()
	a.Delay = h.f.RetryDelay
	start := time.Now()
	h.publish(a, b)
	d := h.receive()
	h.same(d, b)
	h.ack(d)
	d2 := h.receive()
	if el := time.Since(start); el < a.Delay {
		h.t.Errorf("job published with delay %v handed out after %v", a.Delay, el)
	}
	h.same(d2, a)
	h.ack(d2)
}

// autoAck: an auto-ack job never comes back and does not hold up Close.
func autoAck(h *harness) {
	j := h.job()
	j.AutoAck = true
	h.publish(j)
	d := h.receive()
	h.same(d, j)
	h.nothing("after an auto-ack job was received")
	if c := h.reopen(); c != nil {
		h.nothingFrom(c, "after an auto-ack job was received and the consumer reopened")
		return
	}
	h.closeConsumer()
}

// concurrent: several publishers and receivers at once; every job is
// received exactly once.
func concurrent(h *harness) {
	const publishers, receivers, each = 4, 4, 25
	total := publishers * each
	batches := make([][]consumer.Job, publishers)
	for i := range batches {
		batches[i] = h.jobs(each)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*h.f.Timeout)
	defer cancel()
	// The receivers stop once every job was seen; a publisher may still be
	// waiting for the confirm of a job already received, so its ctx lives on.
	recvCtx, stopReceiving := context.WithCancel(ctx)
	defer stopReceiving()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[string]int{}
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for _, b := range batches {
		wg.Go(func() {
			for _, j := range b {
				if err := h.pair.Publisher.Publish(ctx, []consumer.Job{j}); err != nil {
					fail(fmt.Errorf("Publish %q: %w", j.ID, err))
					return
				}
			}
		})
	}
	for range receivers {
		wg.Go(func() {
			for {
				d, err := h.pair.Consumer.Receive(recvCtx)
				if err != nil {
					if recvCtx.Err() == nil {
						fail(fmt.Errorf("Receive: %w", err))
					}
					return
				}
				sctx, scancel := h.ctx()
				err = d.Settle(sctx, consumer.Outcome{Action: consumer.Ack})
				scancel()
				if err != nil {
					fail(fmt.Errorf("Settle %q: %w", d.ID, err))
					return
				}
				mu.Lock()
				seen[d.ID]++
				n := len(seen)
				mu.Unlock()
				if n == total {
					stopReceiving()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.t.Fatal(err)
	}
	for _, b := range batches {
		for _, j := range b {
			if n := seen[j.ID]; n != 1 {
				h.t.Errorf("job %q received %d times, want 1", j.ID, n)
			}
		}
	}
	h.nothing("after every job was acked")
}
