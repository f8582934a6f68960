package consumertest

import (
	"context"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// receiveReady: a driver that implements consumer.ReadyReceiver hands out
// with ReceiveReady, without waiting, the jobs Receive would. The case
// drains a backlog as a pipelined slot does: Receive one job, then poll
// ReceiveReady for the batch behind it (a driver may need a moment to
// have it ready); when ReceiveReady hands out nothing for Quiet, the
// batch is acked and the next one starts with another Receive. A driver
// need not fetch for ReceiveReady alone (it may fetch only for the batch
// behind a Receive), but ReceiveReady must hand out at least one job over
// the run. Every call hands out at most max, appended to dst, keeping
// what dst held; every job arrives exactly once, intact, at attempt 1;
// each can be acked, and nothing comes back. Drivers without it skip the
// case.
func receiveReady(h *harness) {
	rr, ok := h.pair.Consumer.(consumer.ReadyReceiver)
	if !ok {
		h.t.Skip("the driver does not implement consumer.ReadyReceiver")
	}
	const n, batch = 10, 3
	jobs := h.jobs(n)
	h.publish(jobs...)
	want := make(map[string]consumer.Job, n)
	for _, j := range jobs {
		want[j.ID] = j
	}
	seen := 0
	check := func(ds []*consumer.Delivery) {
		h.t.Helper()
		for _, d := range ds {
			if d == nil {
				h.t.Fatalf("delivery %d is nil", seen)
			}
			j, ok := want[d.ID]
			if !ok {
				h.t.Fatalf("delivery %d: unknown or duplicate job %q", seen, d.ID)
			}
			delete(want, d.ID)
			seen++
			h.same(d, j)
			if d.Attempt != 1 {
				h.t.Errorf("job %q: first delivery has attempt %d, want 1", d.ID, d.Attempt)
			}
		}
	}

	first := h.receive()
	if more := rr.ReceiveReady([]*consumer.Delivery{first}, 0); len(more) != 1 || more[0] != first {
		h.t.Fatalf("ReceiveReady(dst of 1, max 0) returned %d deliveries, want dst unchanged", len(more))
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.f.Timeout+time.Duration(n)*(h.f.Quiet+h.f.Timeout))
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	fromReady, receives := 0, 1
	round := []*consumer.Delivery{first}
	idleSince := time.Now()
	for {
		before := len(round)
		round = rr.ReceiveReady(round, batch)
		if len(round) < before || round[0] != first {
			h.t.Fatal("ReceiveReady did not keep what dst held")
		}
		if k := len(round) - before; k > batch {
			h.t.Fatalf("ReceiveReady(max %d) handed out %d deliveries", batch, k)
		}
		fromReady += len(round) - before
		if len(round) > before {
			idleSince = time.Now()
			if seen+len(round) < n {
				continue
			}
		}
		if seen+len(round) >= n || time.Since(idleSince) >= h.f.Quiet {
			// The batch ran: ack it; the next one starts with a Receive.
			check(round)
			for _, d := range round {
				h.ack(d)
			}
			if seen >= n {
				break
			}
			first = h.receive()
			receives++
			round = append(round[:0], first)
			idleSince = time.Now()
			continue
		}
		select {
		case <-ctx.Done():
			h.t.Fatalf("%d of %d jobs handed out (%d by Receive, %d by ReceiveReady) before the deadline", seen+len(round), n, receives, fromReady)
		case <-tick.C:
		}
	}
	if fromReady == 0 {
		h.t.Fatalf("ReceiveReady handed out none of %d jobs: all %d came from Receive", n, receives)
	}

	if more := rr.ReceiveReady(nil, n); len(more) != 0 {
		h.t.Fatalf("ReceiveReady after every job was acked handed out job %q", more[0].ID)
	}
	h.nothing("after every job from ReceiveReady was acked")
	if more := rr.ReceiveReady(nil, n); len(more) != 0 {
		h.t.Fatalf("ReceiveReady after every job was acked handed out job %q", more[0].ID)
	}
}
