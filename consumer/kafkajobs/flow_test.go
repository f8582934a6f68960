package kafkajobs

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

// openWith is open with extra client options after the test ones.
func openWith(t *testing.T, c interface{ ListenAddrs() []string }, cfg Config, extra ...kgo.Opt) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := newDriver(ctx, "orders", Global{Brokers: c.ListenAddrs()}, cfg, "", nil, append(fastGroup(), extra...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// TestBusyPartitionDoesNotStall: 3000 jobs on one partition of a
// two-partition topic, two receivers (ordering by partition keeps one of
// them waiting). The busy partition fills its local buffer again and
// again; that must never make it wait for the long poll (FetchMaxWait, 5s
// here) of the idle partition's fetch.
func TestBusyPartitionDoesNotStall(t *testing.T) {
	const jobs = 3000
	const maxWait = 5 * time.Second
	c := newCluster(t, 2, "orders")
	d := openWith(t, c, testConfig("orders"), kgo.FetchMaxWait(maxWait))
	key := keyFor(t, d, "orders", 0)
	for from := 0; from < jobs; from += 500 {
		batch := make([]consumer.Job, 500)
		for i := range batch {
			batch[i] = consumer.Job{ID: strconv.Itoa(from + i), Key: key}
		}
		publish(t, d, batch...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu      sync.Mutex
		acked   int
		last    = time.Now()
		maxGap  time.Duration
		next    = 0
		ordered = true
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				dl, err := d.Receive(ctx)
				if err != nil {
					return
				}
				// The next record is handed out only after this one is
				// settled: checking before Settle sees offset order.
				mu.Lock()
				ordered = ordered && dl.ID == strconv.Itoa(next)
				next++
				mu.Unlock()
				if err := dl.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); err != nil {
					t.Errorf("Settle: %v", err)
					return
				}
				mu.Lock()
				now := time.Now()
				maxGap = max(maxGap, now.Sub(last))
				last = now
				acked++
				if acked == jobs {
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if acked != jobs {
		t.Fatalf("acked %d of %d jobs in %s", acked, jobs, took)
	}
	if !ordered {
		t.Error("jobs of the partition were not handed out in offset order")
	}
	t.Logf("%d jobs on one partition took %s; longest pause between acks %s", jobs, took, maxGap)
	if maxGap >= maxWait/2 {
		t.Fatalf("the busy partition stalled %s between two acks (FetchMaxWait %s)", maxGap, maxWait)
	}
	waitCommitted(t, rawClient(t, c), "orders", 0, jobs)
}

// TestStalledFullPartitionDoesNotHoldOthersBack: a partition whose head
// job runs long has its buffer full; records that then arrive on another
// partition are still handed out (the full partition is paused at the
// broker once it stalls) and its buffer stays bounded.
func TestStalledFullPartitionDoesNotHoldOthersBack(t *testing.T) {
	c := newCluster(t, 2, "orders")
	d := open(t, c, testConfig("orders"), "")
	busy, idle := keyFor(t, d, "orders", 0), keyFor(t, d, "orders", 1)
	batch := make([]consumer.Job, partitionBuffer+200)
	for i := range batch {
		batch[i] = consumer.Job{ID: "busy-" + strconv.Itoa(i), Key: busy}
	}
	publish(t, d, batch...)
	head := receive(t, d)
	if PositionOf(head).Partition != 0 {
		t.Fatalf("first job on partition %d, want 0", PositionOf(head).Partition)
	}
	// A waiting Receive fills partition 0's buffer behind the running head.
	receiveNone(t, d, 300*time.Millisecond)

	publish(t, d, consumer.Job{ID: "other-1", Key: idle}, consumer.Job{ID: "other-2", Key: idle})
	start := time.Now()
	for _, want := range []string{"other-1", "other-2"} {
		dl := receive(t, d)
		if dl.ID != want {
			t.Fatalf("got %s on partition %d while partition 0's head runs, want %s", dl.ID, PositionOf(dl).Partition, want)
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	if took := time.Since(start); took > stallAfter+3*time.Second {
		t.Errorf("the other partition's jobs took %s behind a stalled full partition", took)
	}
	d.cons.mu.Lock()
	buffered := len(d.cons.parts[topicPartition{"orders", 0}].entries)
	d.cons.mu.Unlock()
	if buffered > partitionBuffer+pollBatch {
		t.Errorf("%d records of the stalled partition buffered, want at most %d", buffered, partitionBuffer+pollBatch)
	}

	settle(t, head, consumer.Outcome{Action: consumer.Ack})
	for i := 1; i < len(batch); i++ {
		dl := receive(t, d)
		if dl.ID != batch[i].ID {
			t.Fatalf("got %s, want %s", dl.ID, batch[i].ID)
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	waitCommitted(t, rawClient(t, c), "orders", 0, int64(len(batch)))
}

// TestBusyFullPartitionLetsOthersThrough: a partition with a full buffer
// whose jobs keep finishing (so it never counts as stalled) must not keep
// another partition's new records waiting behind its own in kgo's buffer:
// with two receivers, the other partition's jobs are handed out within a
// fraction of stallAfter.
func TestBusyFullPartitionLetsOthersThrough(t *testing.T) {
	c := newCluster(t, 2, "orders")
	d := open(t, c, testConfig("orders"), "")
	busy, idle := keyFor(t, d, "orders", 0), keyFor(t, d, "orders", 1)
	batch := make([]consumer.Job, 2*partitionBuffer)
	for i := range batch {
		batch[i] = consumer.Job{ID: "busy-" + strconv.Itoa(i), Key: busy}
	}
	publish(t, d, batch...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	others := make(chan time.Time, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				dl, err := d.Receive(ctx)
				if err != nil {
					return
				}
				if PositionOf(dl).Partition == 0 {
					time.Sleep(20 * time.Millisecond) // a job that takes a while
				} else {
					others <- time.Now()
				}
				if err := dl.Settle(testCtx(t, 5*time.Second), consumer.Outcome{Action: consumer.Ack}); err != nil {
					t.Errorf("Settle: %v", err)
					return
				}
			}
		}()
	}
	// Let partition 0's buffer fill behind the running jobs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.cons.mu.Lock()
		ps := d.cons.parts[topicPartition{"orders", 0}]
		full := ps != nil && ps.full()
		d.cons.mu.Unlock()
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("partition 0's buffer never filled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	publish(t, d, consumer.Job{ID: "other-1", Key: idle}, consumer.Job{ID: "other-2", Key: idle})
	var last time.Time
	for range 2 {
		select {
		case last = <-others:
		case <-ctx.Done():
			t.Fatal("the other partition's jobs never came")
		}
	}
	cancel()
	wg.Wait()
	if took := last.Sub(start); took > stallAfter*3/4 {
		t.Errorf("the other partition's jobs came %s after they were published behind a busy full partition", took)
	}
}
