package kafkajobs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// received is what a test consumer saw of one delivery.
type received struct {
	id, key   string
	seq       int
	partition int32
	by        int // which driver
}

// drain runs n receivers on d that ack everything until ctx ends, sending
// what they see to out.
func drain(ctx context.Context, t testing.TB, wg *sync.WaitGroup, d *Driver, by, n int, out chan<- received) {
	for range n {
		wg.Go(func() {
			for {
				dl, err := d.Receive(ctx)
				if err != nil {
					return
				}
				seq, _ := strconv.Atoi(string(dl.Body))
				out <- received{id: dl.ID, key: dl.Key, seq: seq, partition: PositionOf(dl).Partition, by: by}
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err = dl.Settle(sctx, consumer.Outcome{Action: consumer.Ack})
				cancel()
				if err != nil && !errors.Is(err, consumer.ErrStaleDelivery) && !errors.Is(err, consumer.ErrClosed) {
					t.Errorf("ack %s: %v", dl.ID, err)
					return
				}
			}
		})
	}
}

// TestKeysKeepOrderAcrossPartitions: 30 keys x 100 jobs on 3 partitions;
// every key's jobs arrive in publish order and every key stays on one
// partition, with 8 receivers in parallel.
func TestKeysKeepOrderAcrossPartitions(t *testing.T) {
	for _, ord := range []Ordering{OrderKey, OrderPartition} {
		t.Run(string(ord), func(t *testing.T) {
			const keys, per = 30, 100
			c := newCluster(t, 3, "orders")
			cfg := testConfig("orders")
			cfg.Ordering = ord
			d := open(t, c, cfg, "")

			for i := range per {
				batch := make([]consumer.Job, 0, keys)
				for k := range keys {
					batch = append(batch, consumer.Job{
						ID: fmt.Sprintf("k%d-%d", k, i), Key: fmt.Sprintf("key-%d", k), Payload: []byte(strconv.Itoa(i)),
					})
				}
				publish(t, d, batch...)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out := make(chan received, 64)
			var wg sync.WaitGroup
			drain(ctx, t, &wg, d, 0, 8, out)
			next := map[string]int{}
			part := map[string]int32{}
			used := map[int32]bool{}
			for n := 0; n < keys*per; n++ {
				select {
				case r := <-out:
					if r.seq != next[r.key] {
						t.Fatalf("key %s: got job %d, want %d", r.key, r.seq, next[r.key])
					}
					next[r.key]++
					if p, ok := part[r.key]; ok && p != r.partition {
						t.Fatalf("key %s on partitions %d and %d", r.key, p, r.partition)
					}
					part[r.key] = r.partition
					used[r.partition] = true
				case <-ctx.Done():
					t.Fatalf("only %d of %d jobs received", n, keys*per)
				}
			}
			cancel()
			wg.Wait()
			if len(used) != 3 {
				t.Fatalf("keys landed on partitions %v, want all 3 used", used)
			}
		})
	}
}

// committedMeta returns the committed offset and metadata of
// topic[partition].
func committedMeta(t testing.TB, cl *kgo.Client, topic string, partition int32) (int64, string) {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = testGroup
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{partition}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t, 5*time.Second), cl)
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("offset fetch: %v", err)
			}
			meta := ""
			if p.Metadata != nil {
				meta = *p.Metadata
			}
			return p.Offset, meta
		}
	}
	return -1, ""
}

// TestNoSkippedCommit: acking jobs 2 and 3 while job 1 runs never commits
// past job 1; after the consumer dies with job 1 unsettled, a new member
// of the group gets job 1 again, and not jobs 2 and 3.
func TestNoSkippedCommit(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.Ordering = OrderKey
	d1 := open(t, c, cfg, "")
	publish(t, d1,
		consumer.Job{ID: "j1", Key: "a"}, consumer.Job{ID: "j2", Key: "b"},
		consumer.Job{ID: "j3", Key: "c"}, consumer.Job{ID: "j4", Key: "d"},
	)
	j1, j2, j3 := receive(t, d1), receive(t, d1), receive(t, d1)
	if j1.ID != "j1" || j2.ID != "j2" || j3.ID != "j3" {
		t.Fatalf("got %s %s %s", j1.ID, j2.ID, j3.ID)
	}
	settle(t, j3, consumer.Outcome{Action: consumer.Ack})
	settle(t, j2, consumer.Outcome{Action: consumer.Ack})

	cl := rawClient(t, c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		off, meta := committedMeta(t, cl, "orders", 0)
		if off > 0 {
			t.Fatalf("committed offset %d while job 1 (offset 0) is unsettled", off)
		}
		if off == 0 && meta == "pv1:1-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("commit is offset %d metadata %q, want 0 and pv1:1-2", off, meta)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The consumer goes away with job 1 still running.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d1.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with job 1 unsettled: %v, want a deadline error", err)
	}
	if err := j1.Settle(testCtx(t, time.Second), consumer.Outcome{Action: consumer.Ack}); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Settle after Close: %v, want ErrClosed", err)
	}
	if off, _ := committedMeta(t, cl, "orders", 0); off != 0 {
		t.Fatalf("after Close the committed offset is %d, want 0", off)
	}

	d2 := open(t, c, cfg, "")
	again := receive(t, d2)
	if again.ID != "j1" || PositionOf(again).Offset != 0 {
		t.Fatalf("new consumer got %s (offset %d) first, want j1", again.ID, PositionOf(again).Offset)
	}
	last := receive(t, d2)
	if last.ID != "j4" {
		t.Fatalf("new consumer got %s, want j4 (j2 and j3 were acked)", last.ID)
	}
	receiveNone(t, d2, 300*time.Millisecond)
	settle(t, last, consumer.Outcome{Action: consumer.Ack})
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, cl, "orders", 0, 4)
}

// TestRetryWithDelayKeepsKeyOrder: a retried job of a key comes back
// after its delay and before the key's later jobs; other keys go on.
func TestRetryWithDelayKeepsKeyOrder(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.Ordering = OrderKey
	d := open(t, c, cfg, "")
	publish(t, d,
		consumer.Job{ID: "a1", Key: "a"}, consumer.Job{ID: "a2", Key: "a"},
		consumer.Job{ID: "b1", Key: "b"}, consumer.Job{ID: "a3", Key: "a"},
	)
	var order []string
	a1 := receive(t, d)
	settle(t, a1, consumer.Outcome{Action: consumer.Retry, Delay: 300 * time.Millisecond})
	start := time.Now()
	for len(order) < 5 {
		dl := receive(t, d)
		order = append(order, fmt.Sprintf("%s#%d", dl.ID, dl.Attempt))
		if dl.ID == "a1" && time.Since(start) < 300*time.Millisecond {
			t.Fatalf("a1 came back after %s, before its delay", time.Since(start))
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
		if dl.ID == "b1" {
			order = append(order, "-")
		}
	}
	if got := strings.Join(order, " "); got != "b1#1 - a1#2 a2#1 a3#1" {
		t.Fatalf("order %q, want b1 first (other key), then a1 attempt 2, a2, a3", got)
	}
}

// TestDueDelayedRecordWaitsForRecordsThatPassedIt: a delayed record A is
// passed by the later record B of its key while it waits; when A's time
// comes while B still runs, A is not handed out (never two records of one
// partition, or of one key, out at once) until B is settled, and then it
// is. With ordering: key a record of another key still runs beside B.
func TestDueDelayedRecordWaitsForRecordsThatPassedIt(t *testing.T) {
	for _, ord := range []Ordering{OrderPartition, OrderKey} {
		t.Run(string(ord), func(t *testing.T) {
			c := newCluster(t, 1, "orders")
			cfg := testConfig("orders")
			cfg.Ordering = ord
			d := open(t, c, cfg, "")
			const delay = 300 * time.Millisecond
			publish(t, d,
				consumer.Job{ID: "A", Key: "k", Delay: delay},
				consumer.Job{ID: "B", Key: "k"},
				consumer.Job{ID: "C", Key: "other"},
			)
			b := receive(t, d)
			if b.ID != "B" {
				t.Fatalf("got %s first, want B (A is delayed)", b.ID)
			}
			var cdl *consumer.Delivery
			if ord == OrderKey {
				if cdl = receive(t, d); cdl.ID != "C" {
					t.Fatalf("got %s, want C (another key) beside B", cdl.ID)
				}
			}
			receiveNone(t, d, 2*delay) // A falls due while B runs
			settle(t, b, consumer.Outcome{Action: consumer.Ack})
			a := receive(t, d)
			if a.ID != "A" || PositionOf(a).Offset != 0 {
				t.Fatalf("after B got %s (offset %d), want A (offset 0)", a.ID, PositionOf(a).Offset)
			}
			if ord == OrderPartition {
				receiveNone(t, d, 100*time.Millisecond) // C waits for A
				settle(t, a, consumer.Outcome{Action: consumer.Ack})
				cdl = receive(t, d)
			} else {
				settle(t, a, consumer.Outcome{Action: consumer.Ack})
			}
			settle(t, cdl, consumer.Outcome{Action: consumer.Ack})
			waitCommitted(t, rawClient(t, c), "orders", 0, 3)
		})
	}
}

// assigned returns the partitions d currently owns, sorted.
func assigned(d *Driver) []int32 {
	d.cons.mu.Lock()
	defer d.cons.mu.Unlock()
	var out []int32
	for tp := range d.cons.parts {
		out = append(out, tp.partition)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestTwoConsumersSplitAndTakeOver: two members of a group share the
// partitions; when one closes, the other consumes its partitions and no
// job is lost.
func TestTwoConsumersSplitAndTakeOver(t *testing.T) {
	const partitions, jobs = 4, 200
	c := newCluster(t, partitions, "orders")
	cfg := testConfig("orders")
	d1 := open(t, c, cfg, "")
	d2 := open(t, c, cfg, "")
	deadline := time.Now().Add(15 * time.Second)
	for len(assigned(d1)) == 0 || len(assigned(d2)) == 0 || len(assigned(d1))+len(assigned(d2)) != partitions {
		if time.Now().After(deadline) {
			t.Fatalf("partitions not split: %v and %v", assigned(d1), assigned(d2))
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := make(chan received, 64)
	var wg1, wg2 sync.WaitGroup
	drain(ctx, t, &wg1, d1, 1, 2, out)
	drain(ctx, t, &wg2, d2, 2, 2, out)

	batch := func(from int) []consumer.Job {
		var b []consumer.Job
		for i := from; i < from+jobs/2; i++ {
			b = append(b, consumer.Job{ID: fmt.Sprintf("job-%d", i), Payload: []byte(strconv.Itoa(i))})
		}
		return b
	}
	seen := map[string]int{}
	parts := map[int]map[int32]bool{1: {}, 2: {}}
	collect := func(n int) {
		t.Helper()
		for len(seen) < n {
			select {
			case r := <-out:
				seen[r.id]++
				parts[r.by][r.partition] = true
			case <-ctx.Done():
				t.Fatalf("only %d of %d jobs received", len(seen), n)
			}
		}
	}
	publish(t, d1, batch(0)...)
	collect(jobs / 2)
	if len(parts[1]) == 0 || len(parts[2]) == 0 {
		t.Fatalf("one consumer got nothing: %v", parts)
	}
	for p := range parts[1] {
		if parts[2][p] {
			t.Fatalf("partition %d consumed by both members", p)
		}
	}

	// d2 leaves; d1 takes its partitions over.
	if err := d2.Close(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg2.Wait()
	publish(t, d1, batch(jobs/2)...)
	collect(jobs)
	cancel()
	wg1.Wait()
	for i := range jobs {
		id := fmt.Sprintf("job-%d", i)
		if seen[id] == 0 {
			t.Errorf("job %s lost", id)
		}
	}
	for i := jobs / 2; i < jobs; i++ {
		if n := seen[fmt.Sprintf("job-%d", i)]; n != 1 {
			t.Errorf("job-%d received %d times after the takeover", i, n)
		}
	}
	if got := assigned(d1); len(got) != partitions {
		t.Fatalf("after the takeover d1 owns %v, want all %d partitions", got, partitions)
	}
}

// keyFor returns a key that the driver puts on partition p of topic.
func keyFor(t *testing.T, d *Driver, topic string, p int32) string {
	t.Helper()
	for i := range 1000 {
		key := "key-" + strconv.Itoa(i)
		got, err := d.prod.partition(testCtx(t, 5*time.Second), &kgo.Record{Topic: topic, Key: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		if got == p {
			return key
		}
	}
	t.Fatalf("no key maps to partition %d", p)
	return ""
}

// TestRebalanceMakesMovedDeliveriesStale: deliveries of a partition that
// moved to another member and were still running after revoke_timeout
// cannot be settled (ErrStaleDelivery), commit nothing, and the new owner
// gets the job; the partition that stayed settles normally.
func TestRebalanceMakesMovedDeliveriesStale(t *testing.T) {
	c := newCluster(t, 2, "orders")
	cfg := testConfig("orders")
	cfg.GroupOptions.RevokeTimeout = 300 * time.Millisecond
	d1 := open(t, c, cfg, "")
	publish(t, d1,
		consumer.Job{ID: "p0", Key: keyFor(t, d1, "orders", 0)},
		consumer.Job{ID: "p1", Key: keyFor(t, d1, "orders", 1)},
	)
	held := map[int32]*consumer.Delivery{}
	for range 2 {
		dl := receive(t, d1)
		held[PositionOf(dl).Partition] = dl
	}

	d2 := open(t, c, cfg, "")
	kept, moved := waitSplit(t, d1, d2)
	err := held[moved].Settle(testCtx(t, 5*time.Second), consumer.Outcome{Action: consumer.Ack})
	if !errors.Is(err, consumer.ErrStaleDelivery) {
		t.Fatalf("settling a delivery of the moved partition: %v, want ErrStaleDelivery", err)
	}
	settle(t, held[kept], consumer.Outcome{Action: consumer.Ack})

	again := receive(t, d2)
	if again.ID != held[moved].ID || PositionOf(again).Partition != moved {
		t.Fatalf("new owner got %s on partition %d, want %s on %d", again.ID, PositionOf(again).Partition, held[moved].ID, moved)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
	cl := rawClient(t, c)
	waitCommitted(t, cl, "orders", kept, 1)
	waitCommitted(t, cl, "orders", moved, 1)
}

// TestLocalBufferIsBounded: while a partition's head job runs, the driver
// buffers at most partitionBuffer (+ one poll) of its records, and every
// record still arrives in order once the head is done.
func TestLocalBufferIsBounded(t *testing.T) {
	const jobs = partitionBuffer + 300
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	batch := make([]consumer.Job, jobs)
	for i := range batch {
		batch[i] = consumer.Job{ID: strconv.Itoa(i), Key: "k"}
	}
	publish(t, d, batch...)
	head := receive(t, d)
	// A waiting Receive keeps the poller fetching behind the head.
	receiveNone(t, d, time.Second)
	d.cons.mu.Lock()
	buffered := len(d.cons.parts[topicPartition{"orders", 0}].entries)
	d.cons.mu.Unlock()
	if buffered > partitionBuffer+pollBatch || buffered < partitionBuffer {
		t.Fatalf("%d records buffered behind a running job, want between %d and %d", buffered, partitionBuffer, partitionBuffer+pollBatch)
	}
	settle(t, head, consumer.Outcome{Action: consumer.Ack})
	for i := 1; i < jobs; i++ {
		dl := receive(t, d)
		if dl.ID != strconv.Itoa(i) {
			t.Fatalf("got job %s, want %d", dl.ID, i)
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	waitCommitted(t, rawClient(t, c), "orders", 0, jobs)
}
