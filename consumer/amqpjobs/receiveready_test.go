package amqpjobs

import (
	"context"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// readyAll calls ReceiveReady(dst, max) until dst holds want deliveries,
// checking that no call hands out more than max, and fails after timeout.
// It returns dst and the size of each non-empty batch.
func readyAll(t *testing.T, d *Driver, dst []*consumer.Delivery, want, max int, timeout time.Duration) ([]*consumer.Delivery, []int) {
	t.Helper()
	var batches []int
	deadline := time.Now().Add(timeout)
	for len(dst) < want {
		before := len(dst)
		dst = d.ReceiveReady(dst, max)
		switch k := len(dst) - before; {
		case k > max:
			t.Fatalf("ReceiveReady(max %d) handed out %d deliveries", max, k)
		case k > 0:
			batches = append(batches, k)
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReceiveReady handed out %d of %d deliveries in %v (batches %v)", len(dst), want, timeout, batches)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return dst, batches
}

// inOrder checks that got are the jobs, in order, each once, at attempt 1.
func inOrder(t *testing.T, got []*consumer.Delivery, jobs []consumer.Job) {
	t.Helper()
	if len(got) != len(jobs) {
		t.Fatalf("got %d deliveries, want %d", len(got), len(jobs))
	}
	for i, del := range got {
		if del.ID != jobs[i].ID || string(del.Body) != string(jobs[i].Payload) {
			t.Fatalf("delivery %d is %q (body %q), want %q (body %q): not in queue order", i, del.ID, del.Body, jobs[i].ID, jobs[i].Payload)
		}
		if del.Attempt != 1 || del.Driver != DriverName || del.Job != jobs[i].Name {
			t.Errorf("delivery %d: attempt %d, driver %q, job %q", i, del.Attempt, del.Driver, del.Job)
		}
	}
}

// ackAll acks every delivery.
func ackAll(t *testing.T, dels []*consumer.Delivery) {
	t.Helper()
	for _, del := range dels {
		settle(t, del, consumer.Outcome{Action: consumer.Ack})
	}
}

// quiet checks that neither ReceiveReady nor Receive hands out anything
// for a while.
func quiet(t *testing.T, d *Driver, when string) {
	t.Helper()
	for range 10 {
		if more := d.ReceiveReady(nil, 10); len(more) != 0 {
			t.Fatalf("%s: ReceiveReady handed out %q", when, more[0].ID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if del, err := d.Receive(ctx); err == nil {
		t.Fatalf("%s: Receive handed out %q", when, del.ID)
	}
}

// TestReceiveReady: with 20 jobs prefetched, one Receive and then
// ReceiveReady(10) calls hand out all of them in queue order, at most 10
// per call; acked, the queue is empty and stays so (Close gives nothing
// back). Paused, ReceiveReady hands out nothing; resumed, the jobs
// published meanwhile come in order. With multiple_ack too (the turn).
func TestReceiveReady(t *testing.T) {
	for _, multi := range []bool{false, true} {
		name := "ack"
		if multi {
			name = "multiple_ack"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Prefetch = 20
			cfg.MultipleAck = multi
			d := open(t, cfg, "")
			jobs := numbered("r", 20)
			publish(t, d, jobs...)

			if got := d.ReceiveReady(nil, 0); len(got) != 0 {
				t.Fatalf("ReceiveReady(max 0) handed out %d", len(got))
			}
			got := []*consumer.Delivery{recv(t, d)}
			// Everything is pushed to the client once the queue has no
			// ready message left (prefetch 20).
			waitFor(t, 5*time.Second, "all 20 jobs prefetched", func() bool { return queueCount(t, cfg.Queue) == 0 })
			got, batches := readyAll(t, d, got, len(jobs), 10, 5*time.Second)
			inOrder(t, got, jobs)
			// How many a call finds depends on how far amqp091 has got
			// with the frames, but one at a time means it never batches.
			if len(batches) == len(jobs)-1 {
				t.Errorf("ReceiveReady handed out the 19 prefetched jobs one per call")
			}
			t.Logf("batches after Receive: %v", batches)
			if active := d.outstanding.Load(); active != int64(len(jobs)) {
				t.Errorf("%d deliveries outstanding, want %d", active, len(jobs))
			}
			ackAll(t, got)
			if active := d.outstanding.Load(); active != 0 {
				t.Errorf("%d deliveries outstanding after every ack", active)
			}
			quiet(t, d, "every job acked")
			if n := queueCount(t, cfg.Queue); n != 0 {
				t.Fatalf("%d jobs left in the queue after every job was acked", n)
			}

			// Paused: nothing, though jobs are waiting.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := d.Pause(ctx); err != nil {
				t.Fatalf("Pause: %v", err)
			}
			more := numbered("p", 5)
			publish(t, d, more...)
			for range 20 {
				if got := d.ReceiveReady(nil, 10); len(got) != 0 {
					t.Fatalf("paused, ReceiveReady handed out %q", got[0].ID)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n := queueCount(t, cfg.Queue); n != len(more) {
				t.Fatalf("paused: %d jobs in the queue, want %d", n, len(more))
			}
			if err := d.Resume(ctx); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			got = []*consumer.Delivery{recv(t, d)}
			got, _ = readyAll(t, d, got, len(more), 10, 5*time.Second)
			inOrder(t, got, more)
			ackAll(t, got)
			quiet(t, d, "every job acked after Resume")

			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			if err := d.Close(cctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := d.ReceiveReady(nil, 10); len(got) != 0 {
				t.Fatalf("closed, ReceiveReady handed out %q", got[0].ID)
			}
			if n := queueCount(t, cfg.Queue); n != 0 {
				t.Fatalf("%d jobs back in the queue after Close: something was not acked", n)
			}
		})
	}
}

// TestReceiveReadyTurnHeld: with multiple_ack, while a Receive waits on
// the feed holding its turn, ReceiveReady hands out nothing (it would
// track tags out of order) and the waiting Receive gets the next job.
func TestReceiveReadyTurnHeld(t *testing.T) {
	cfg := testConfig(t)
	cfg.MultipleAck = true
	d := open(t, cfg, "")
	type result struct {
		del *consumer.Delivery
		err error
	}
	res := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		del, err := d.Receive(ctx)
		res <- result{del, err}
	}()
	f, _ := d.currentFeed()
	waitFor(t, 5*time.Second, "Receive holding the turn", func() bool { return len(f.turn) == 1 })
	if got := d.ReceiveReady(nil, 10); len(got) != 0 {
		t.Fatalf("ReceiveReady handed out %q from an empty queue", got[0].ID)
	}
	jobs := numbered("t", 1)
	publish(t, d, jobs...)
	r := <-res
	if r.err != nil {
		t.Fatalf("Receive: %v", r.err)
	}
	inOrder(t, []*consumer.Delivery{r.del}, jobs)
	settle(t, r.del, consumer.Outcome{Action: consumer.Ack})
	quiet(t, d, "the one job acked")
}
