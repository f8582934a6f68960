package kafkajobs

import (
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestRebalanceWaitsForRunningJobs: a member joins while the first member
// runs one job on each partition. The partition that moves is handed to
// the new member only after its running job was settled by the first
// member (which succeeds, and is committed): the job never runs on both,
// and the new member starts after it.
func TestRebalanceWaitsForRunningJobs(t *testing.T) {
	c := newCluster(t, 2, "orders")
	cfg := testConfig("orders")
	d1 := open(t, c, cfg, "")
	k0, k1 := keyFor(t, d1, "orders", 0), keyFor(t, d1, "orders", 1)
	publish(t, d1,
		consumer.Job{ID: "a0", Key: k0}, consumer.Job{ID: "b0", Key: k0},
		consumer.Job{ID: "a1", Key: k1}, consumer.Job{ID: "b1", Key: k1},
	)
	held := map[int32]*consumer.Delivery{}
	for range 2 {
		dl := receive(t, d1)
		held[PositionOf(dl).Partition] = dl
	}
	if held[0] == nil || held[1] == nil || held[0].ID != "a0" || held[1].ID != "a1" {
		t.Fatalf("first member runs %v, want a0 and a1", held)
	}

	d2 := open(t, c, cfg, "")
	// While both jobs run, the new member gets nothing.
	receiveNone(t, d2, time.Second)
	if got := assigned(d2); len(got) != 0 {
		t.Fatalf("new member owns %v while the first still runs their jobs", got)
	}
	for p, dl := range held {
		if err := dl.Settle(testCtx(t, 5*time.Second), consumer.Outcome{Action: consumer.Ack}); err != nil {
			t.Fatalf("settling the running job of partition %d during the rebalance: %v", p, err)
		}
	}

	kept, moved := waitSplit(t, d1, d2)
	want := map[int32]string{0: "b0", 1: "b1"}
	for _, m := range []struct {
		d *Driver
		p int32
	}{{d1, kept}, {d2, moved}} {
		dl := receive(t, m.d)
		if dl.ID != want[m.p] || PositionOf(dl).Partition != m.p {
			t.Fatalf("owner of partition %d got %s on partition %d, want %s", m.p, dl.ID, PositionOf(dl).Partition, want[m.p])
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	receiveNone(t, d2, 300*time.Millisecond)
	cl := rawClient(t, c)
	waitCommitted(t, cl, "orders", 0, 2)
	waitCommitted(t, cl, "orders", 1, 2)
}
