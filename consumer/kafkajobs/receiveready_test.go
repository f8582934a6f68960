package kafkajobs

import (
	"fmt"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/twmb/franz-go/pkg/kfake"
)

// publishPerPartition publishes per jobs to each of the n partitions of
// topic through d (a key that maps to the partition) and returns the IDs
// by partition, in publish order.
func publishPerPartition(t *testing.T, d *Driver, topic string, n int32, per int) map[int32][]string {
	t.Helper()
	ids := make(map[int32][]string, n)
	var jobs []consumer.Job
	for p := range n {
		key := keyFor(t, d, topic, p)
		for i := range per {
			id := fmt.Sprintf("p%d-%d", p, i)
			ids[p] = append(ids[p], id)
			jobs = append(jobs, consumer.Job{ID: id, Key: key, Payload: []byte(id)})
		}
	}
	publish(t, d, jobs...)
	return ids
}

// readyUntil calls ReceiveReady(nil, limit) until the deliveries in flight
// (held plus what it hands out) cover want partitions or 10 s passed; it
// returns what it handed out and the largest single batch.
func readyUntil(t *testing.T, d *Driver, held []*consumer.Delivery, want, limit int) (got []*consumer.Delivery, biggest int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(held)+len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("ReceiveReady handed out %d deliveries in 10s with %d held, want %d in flight", len(got), len(held), want)
		}
		more := d.ReceiveReady(nil, limit)
		if len(more) > limit {
			t.Fatalf("ReceiveReady(max %d) handed out %d", limit, len(more))
		}
		biggest = max(biggest, len(more))
		got = append(got, more...)
		if len(more) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return got, biggest
}

// TestReceiveReadyBatchesAcrossPartitions: with fetched records on four
// partitions under ordering: partition, ReceiveReady hands out the next
// record of every partition with none out, in one call, never a second
// one of a partition (even with room for more), each record once and in
// offset order; acking them all commits every partition to its end.
func TestReceiveReadyBatchesAcrossPartitions(t *testing.T) {
	const parts, per = 4, 3
	c := newCluster(t, parts, "orders")
	// Publish first, then start the consumer: its first fetch holds every
	// partition's records.
	pubCfg := testConfig("orders")
	pubCfg.GroupOptions.GroupID = "publisher" // never receives
	ids := publishPerPartition(t, open(t, c, pubCfg, ""), "orders", parts, per)
	d, first := openFetched(t, c, parts*per)

	next := map[int32]int{} // per partition: index of the next ID due
	seen := map[string]bool{}
	check := func(dl *consumer.Delivery, out map[int32]*consumer.Delivery) {
		t.Helper()
		if seen[dl.ID] {
			t.Fatalf("%s handed out twice", dl.ID)
		}
		seen[dl.ID] = true
		if o := out[PositionOf(dl).Partition]; o != nil {
			t.Fatalf("%s of partition %d handed out while %s of the same partition is out", dl.ID, PositionOf(dl).Partition, o.ID)
		}
		out[PositionOf(dl).Partition] = dl
		if i := next[PositionOf(dl).Partition]; i >= per || ids[PositionOf(dl).Partition][i] != dl.ID || PositionOf(dl).Offset != int64(i) || dl.Attempt != 1 || string(dl.Body) != dl.ID {
			t.Fatalf("partition %d: got %s (offset %d, attempt %d), want %s at offset %d, attempt 1",
				PositionOf(dl).Partition, dl.ID, PositionOf(dl).Offset, dl.Attempt, ids[PositionOf(dl).Partition][min(i, per-1)], i)
		}
		next[PositionOf(dl).Partition]++
	}

	out := map[int32]*consumer.Delivery{}
	check(first, out)
	if got := d.ReceiveReady(nil, 0); len(got) != 0 {
		t.Fatalf("ReceiveReady(max 0) handed out %d", len(got))
	}
	got, biggest := readyUntil(t, d, []*consumer.Delivery{first}, parts, 8)
	for _, dl := range got {
		check(dl, out)
	}
	if biggest < 2 {
		t.Fatalf("ReceiveReady handed out at most %d delivery per call, want the other partitions' heads in one", biggest)
	}
	for round := 1; ; round++ {
		// Every partition has a record out: nothing more is ready.
		if more := d.ReceiveReady(nil, 8); len(more) != 0 {
			t.Fatalf("round %d: ReceiveReady handed out %s of partition %d with every partition busy", round, more[0].ID, PositionOf(more[0]).Partition)
		}
		for _, dl := range out {
			settle(t, dl, consumer.Outcome{Action: consumer.Ack})
		}
		clear(out)
		if round == per {
			break
		}
		got := d.ReceiveReady(nil, 8)
		if len(got) != parts {
			t.Fatalf("round %d: ReceiveReady handed out %d with %d idle partitions holding records", round, len(got), parts)
		}
		for _, dl := range got {
			check(dl, out)
		}
	}
	if len(seen) != parts*per {
		t.Fatalf("%d distinct jobs handed out, want %d", len(seen), parts*per)
	}
	receiveNone(t, d, 300*time.Millisecond)
	cl := rawClient(t, c)
	for p := range int32(parts) {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got := committed(t, cl, d.cfg.GroupOptions.GroupID, "orders", p)
			if got == per {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("committed offset of orders[%d] is %d, want %d", p, got, per)
			}
		}
	}
}

// TestReceiveReadyKeyOrdering: under ordering: key, ReceiveReady batches
// the records of one partition with different keys, never a second one
// of a key that is out or waits for an in-place retry, and the next one
// of a key once its predecessor was acked.
func TestReceiveReadyKeyOrdering(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.Ordering = OrderKey
	d := open(t, c, cfg, "")
	var jobs []consumer.Job
	for _, id := range []string{"a1", "b1", "c1", "a2", "b2", "c2"} {
		jobs = append(jobs, consumer.Job{ID: id, Key: id[:1]})
	}
	publish(t, d, jobs...)
	ids := func(ds []*consumer.Delivery) string {
		s := ""
		for _, dl := range ds {
			s += dl.ID + " "
		}
		return s
	}
	a1 := receive(t, d)
	if a1.ID != "a1" {
		t.Fatalf("Receive: got %s, want a1", a1.ID)
	}
	batch := d.ReceiveReady(nil, 8)
	if got := ids(batch); got != "b1 c1 " {
		t.Fatalf("ReceiveReady with a1 out: got %q, want b1 c1", got)
	}
	if more := d.ReceiveReady(nil, 8); len(more) != 0 {
		t.Fatalf("ReceiveReady with every key busy handed out %s", more[0].ID)
	}
	// An in-place retry holds its key back: not a2, and a1 only once due.
	settle(t, a1, consumer.Outcome{Action: consumer.Retry, Delay: 200 * time.Millisecond})
	if more := d.ReceiveReady(nil, 8); len(more) != 0 {
		t.Fatalf("ReceiveReady with a1 waiting for its retry handed out %s", more[0].ID)
	}
	deadline := time.Now().Add(5 * time.Second)
	var again []*consumer.Delivery
	for len(again) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		again = d.ReceiveReady(nil, 8)
	}
	if got := ids(again); got != "a1 " || again[0].Attempt != 2 {
		t.Fatalf("ReceiveReady once a1's retry was due: got %q, want a1 at attempt 2", got)
	}
	settle(t, again[0], consumer.Outcome{Action: consumer.Ack})
	next := d.ReceiveReady(nil, 8)
	if got := ids(next); got != "a2 " {
		t.Fatalf("ReceiveReady after a1 was acked: got %q, want a2", got)
	}
	for _, dl := range batch {
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	last := d.ReceiveReady(nil, 8)
	if got := ids(last); got != "b2 c2 " {
		t.Fatalf("ReceiveReady after b1 and c1 were acked: got %q, want b2 c2", got)
	}
	for _, dl := range append(next, last...) {
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	waitCommitted(t, rawClient(t, c), "orders", 0, 6)
}

// fetchedHeads starts a driver on a topic of parts partitions with one
// record published to each (before the driver started, so that its first
// fetch holds them all), receives one and waits until ReceiveReady would
// have the other heads: it returns the driver and the received delivery.
func fetchedHeads(t *testing.T, parts int32) (*Driver, *consumer.Delivery) {
	t.Helper()
	c := newCluster(t, parts, "orders")
	pubCfg := testConfig("orders")
	pubCfg.GroupOptions.GroupID = "publisher"
	publishPerPartition(t, open(t, c, pubCfg, ""), "orders", parts, 1)
	return openFetched(t, c, int(parts))
}

// openFetched starts a driver on c's "orders" topic, receives one record
// and returns once the driver holds want records, the first included.
// The driver polls only for a Receive that finds nothing ready, and the
// client's first fetch may hold some partitions only (their offsets not
// yet known): then it tries again in a fresh group.
func openFetched(t *testing.T, c *kfake.Cluster, want int) (*Driver, *consumer.Delivery) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		cfg := testConfig("orders")
		if attempt > 1 {
			cfg.GroupOptions.GroupID = fmt.Sprintf("%s-%d", testGroup, attempt)
		}
		d := open(t, c, cfg, "")
		first := receive(t, d)
		n := 0
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			d.cons.mu.Lock()
			n = 0
			for _, ps := range d.cons.parts {
				n += len(ps.entries)
			}
			d.cons.mu.Unlock()
			if n == want {
				return d, first
			}
		}
		if attempt == 5 {
			t.Fatalf("%d of %d records fetched by the first poll, in %d groups", n, want, attempt)
		}
		settle(t, first, consumer.Outcome{Action: consumer.Release})
	}
}

// TestReceiveReadyLeavesOneToEachWaitingReceive: with a Receive waiting,
// ReceiveReady hands out all but one of the ready records, and the one
// it leaves is the next Receive would have returned after them.
func TestReceiveReadyLeavesOneToEachWaitingReceive(t *testing.T) {
	d, first := fetchedHeads(t, 4)
	c := d.cons
	c.mu.Lock()
	c.waiters++ // as a Receive blocked in another slot
	c.mu.Unlock()
	batch := d.ReceiveReady(nil, 8)
	c.mu.Lock()
	c.waiters--
	c.mu.Unlock()
	if len(batch) != 2 {
		t.Fatalf("ReceiveReady with 3 ready and a Receive waiting handed out %d, want 2", len(batch))
	}
	left := receive(t, d)
	inFlight := map[int32]string{PositionOf(first).Partition: first.ID}
	for _, dl := range append(batch, left) {
		if o, ok := inFlight[PositionOf(dl).Partition]; ok {
			t.Fatalf("%s of partition %d handed out with %s out", dl.ID, PositionOf(dl).Partition, o)
		}
		inFlight[PositionOf(dl).Partition] = dl.ID
	}
	// Receive order is round-robin from the first one's partition on:
	// the batch took the two after it, the waiting Receive the last one.
	want := []int32{(PositionOf(first).Partition + 1) % 4, (PositionOf(first).Partition + 2) % 4, (PositionOf(first).Partition + 3) % 4}
	for i, dl := range append(batch, left) {
		if PositionOf(dl).Partition != want[i] {
			t.Fatalf("hand-out %d is of partition %d, want %d (round-robin order)", i, PositionOf(dl).Partition, want[i])
		}
	}
	for _, dl := range append(batch, first, left) {
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
}

// TestReceiveReadyHandsOutNothingWhenStopped: nothing comes from a
// partition being revoked, nor once Close began, though records are
// fetched and their partitions idle.
func TestReceiveReadyHandsOutNothingWhenStopped(t *testing.T) {
	d, first := fetchedHeads(t, 3)
	c := d.cons
	setRevoking := func(v bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, ps := range c.parts {
			ps.revoking = v
		}
	}
	setRevoking(true)
	if got := d.ReceiveReady(nil, 8); len(got) != 0 {
		t.Fatalf("ReceiveReady handed out %s of a partition being revoked", got[0].ID)
	}
	setRevoking(false)

	closed := make(chan error, 1)
	go func() { closed <- d.Close(testCtx(t, 10*time.Second)) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if closing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not begin")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := d.ReceiveReady(nil, 8); len(got) != 0 {
		t.Fatalf("ReceiveReady handed out %s after Close began", got[0].ID)
	}
	settle(t, first, consumer.Outcome{Action: consumer.Ack})
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
