package kafkajobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

const testGroup = "workers"

// newCluster starts an in-process Kafka (one broker on 127.0.0.1) with
// the given topics of n partitions each.
func newCluster(t testing.TB, n int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(n, topics...),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// fastGroup shortens group timers so that rebalances take well under a
// second against kfake.
func fastGroup() []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(time.Second),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.RebalanceTimeout(5 * time.Second),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}
}

func testConfig(topic string) Config {
	return Config{
		ConsumerOptions: ConsumerOptions{Topics: []string{topic}},
		GroupOptions:    GroupOptions{GroupID: testGroup},
	}
}

// open starts a driver on c and closes it when the test ends.
func open(t testing.TB, c *kfake.Cluster, cfg Config, deadLetter string) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := newDriver(ctx, "orders", Global{Brokers: c.ListenAddrs()}, cfg, deadLetter, nil, fastGroup()...)
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

func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// receive takes one delivery or fails the test after a deadline.
func receive(t testing.TB, d *Driver) *consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dl, err := d.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return dl
}

// receiveNone asserts that nothing is handed out within wait.
func receiveNone(t testing.TB, d *Driver, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dl, err := d.Receive(ctx)
	if err == nil {
		t.Fatalf("Receive handed out %s (offset %d) while nothing should be available", dl.ID, PositionOf(dl).Offset)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive: %v", err)
	}
}

func settle(t testing.TB, dl *consumer.Delivery, o consumer.Outcome) {
	t.Helper()
	if err := dl.Settle(testCtx(t, 10*time.Second), o); err != nil {
		t.Fatalf("Settle(%s) of %s: %v", o.Action, dl.ID, err)
	}
}

func publish(t testing.TB, d *Driver, jobs ...consumer.Job) {
	t.Helper()
	if err := d.Publish(testCtx(t, 10*time.Second), jobs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// rawClient is a plain franz-go client for inspecting the cluster.
func rawClient(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// committed returns the group's committed offset of topic[partition], -1
// when there is none.
func committed(t testing.TB, cl *kgo.Client, group, topic string, partition int32) int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{partition}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t, 5*time.Second), cl)
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if rt.Topic == topic && p.Partition == partition {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					t.Fatalf("offset fetch %s[%d]: %v", topic, partition, err)
				}
				return p.Offset
			}
		}
	}
	return -1
}

// waitCommitted polls until the committed offset equals want.
func waitCommitted(t testing.TB, cl *kgo.Client, topic string, partition int32, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := committed(t, cl, testGroup, topic, partition)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offset of %s[%d] is %d, want %d", topic, partition, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consumeAll reads every record of topic from the start with a plain
// client, until n records were read.
func consumeAll(t testing.TB, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := rawClient(t, c, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := testCtx(t, 10*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s: got %d of %d records: %v", topic, len(out), n, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// waitSplit waits until d1 and d2 own one partition each and returns
// them: the one d1 kept and the one that moved to d2.
func waitSplit(t testing.TB, d1, d2 *Driver) (kept, moved int32) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(assigned(d1)) != 1 || len(assigned(d2)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no split: %v and %v", assigned(d1), assigned(d2))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return assigned(d1)[0], assigned(d2)[0]
}

// checkRecord fails the test unless r has the given key, value and
// header values.
func checkRecord(t testing.TB, r *kgo.Record, key, value string, headers map[string]string) {
	t.Helper()
	if string(r.Key) != key || string(r.Value) != value {
		t.Fatalf("record key %q value %q, want %q and %q", r.Key, r.Value, key, value)
	}
	for k, want := range headers {
		if got, _ := header(r, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}
