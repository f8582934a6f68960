package consumertest

import (
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// receiveReady: a driver that implements consumer.ReadyReceiver hands out
// with ReceiveReady, without waiting, the jobs Receive would. Once one job
// of a backlog came from Receive, the others come out of ReceiveReady
// (polled: a driver may need a moment to have them ready), at most max per
// call, appended to dst, each once, intact, at attempt 1; each can be
// acked, and nothing comes back. Drivers without it skip the case.
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

	first := h.receive()
	got := []*consumer.Delivery{first}
	if more := rr.ReceiveReady(got, 0); len(more) != 1 || more[0] != first {
		h.t.Fatalf("ReceiveReady(dst of 1, max 0) returned %d deliveries, want dst unchanged", len(more))
	}
	ctx, cancel := h.ctx()
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(got) < n {
		before := len(got)
		got = rr.ReceiveReady(got, batch)
		if len(got) < before || got[0] != first {
			h.t.Fatal("ReceiveReady did not keep what dst held")
		}
		if k := len(got) - before; k > batch {
			h.t.Fatalf("ReceiveReady(max %d) handed out %d deliveries", batch, k)
		}
		if len(got) > before {
			continue
		}
		select {
		case <-ctx.Done():
			h.t.Fatalf("ReceiveReady handed out %d of the %d jobs left after Receive in %v", len(got)-1, n-1, h.f.Timeout)
		case <-tick.C:
		}
	}

	for i, d := range got {
		if d == nil {
			h.t.Fatalf("delivery %d is nil", i)
		}
		j, ok := want[d.ID]
		if !ok {
			h.t.Fatalf("delivery %d: unknown or duplicate job %q", i, d.ID)
		}
		delete(want, d.ID)
		h.same(d, j)
		if d.Attempt != 1 {
			h.t.Errorf("job %q: first delivery has attempt %d, want 1", d.ID, d.Attempt)
		}
	}
	for _, d := range got {
		h.ack(d)
	}
	if more := rr.ReceiveReady(nil, n); len(more) != 0 {
		h.t.Fatalf("ReceiveReady after every job was acked handed out job %q", more[0].ID)
	}
	h.nothing("after every job from ReceiveReady was acked")
	if more := rr.ReceiveReady(nil, n); len(more) != 0 {
		h.t.Fatalf("ReceiveReady after every job was acked handed out job %q", more[0].ID)
	}
}
