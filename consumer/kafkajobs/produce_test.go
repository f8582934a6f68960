package kafkajobs

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// failProduce answers req with code for every partition in it.
func failProduce(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func inflight(d *Driver, tp topicPartition) int {
	d.prod.mu.Lock()
	defer d.prod.mu.Unlock()
	if h := d.prod.health[tp]; h != nil {
		return h.inflight
	}
	return 0
}

// TestProduceFailureFailsThePartitionTogether: a produce to a partition
// fails (kfake answers INVALID_RECORD) while a later job for the same key
// waits behind it. Both publishes report the failure (kgo fails every
// record buffered for the partition), nothing of them is in the log, and
// the next publish to the partition works: a retried A and B can never
// land behind a job that overtook them.
func TestProduceFailureFailsThePartitionTogether(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	job := func(id string) consumer.Job { return consumer.Job{ID: id, Key: "k", Payload: []byte(id)} }
	publish(t, d, job("warm-up")) // producer id, metadata and the first ack

	var (
		n        atomic.Int32
		arrivedA = make(chan struct{})
		releaseA = make(chan struct{})
	)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if n.Add(1) != 1 {
			return nil, nil, false
		}
		close(arrivedA)
		c.SleepControl(func() { <-releaseA })
		return failProduce(kreq.(*kmsg.ProduceRequest), kerr.InvalidRecord.Code), nil, true
	})

	ctx := testCtx(t, 20*time.Second)
	resA, resB := make(chan error, 1), make(chan error, 1)
	go func() { resA <- d.Publish(ctx, []consumer.Job{job("A")}) }()
	select {
	case <-arrivedA:
	case <-ctx.Done():
		t.Fatal("A's produce request never reached the broker")
	}
	go func() { resB <- d.Publish(ctx, []consumer.Job{job("B1"), job("B2")}) }()
	tp := topicPartition{"orders", 0}
	for inflight(d, tp) != 3 {
		if ctx.Err() != nil {
			t.Fatal("B never went in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(releaseA)
	if err := <-resA; !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("A: %v, want INVALID_RECORD", err)
	}
	errB := <-resB
	var be *consumer.BatchError
	if !errors.As(errB, &be) || len(be.Failed) != 2 || !errors.Is(be.Failed[0], kerr.InvalidRecord) {
		t.Fatalf("B: %v, want both jobs failed with INVALID_RECORD", errB)
	}
	if got := inflight(d, tp); got != 0 {
		t.Fatalf("%d records still counted in flight", got)
	}
	publish(t, d, job("D"))
	var got []string
	for _, r := range consumeUntil(t, c, "orders", "D") {
		got = append(got, string(r.Value))
	}
	if strings.Join(got, ",") != "warm-up,D" {
		t.Fatalf("log holds %q, want warm-up,D", got)
	}
}

// TestPartitionHealthFailsFastUntilSettled pins the rule itself: after a
// failure on a partition, new records for it are refused until every
// record that was in flight with it has its result; other partitions are
// not affected.
func TestPartitionHealthFailsFastUntilSettled(t *testing.T) {
	p := newProducer(nil, Config{})
	tp, other := topicPartition{"t", 0}, topicPartition{"t", 1}
	for range 3 {
		if err := p.acquire(tp); err != nil {
			t.Fatal(err)
		}
	}
	p.release(tp, kerr.InvalidRecord) // the first failure
	if err := p.acquire(tp); !errors.Is(err, ErrPartitionFailed) || !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("acquire after a failure: %v, want ErrPartitionFailed wrapping the cause", err)
	}
	if err := p.acquire(other); err != nil {
		t.Fatalf("another partition: %v", err)
	}
	p.release(tp, nil) // a sibling that was in flight succeeded
	if err := p.acquire(tp); !errors.Is(err, ErrPartitionFailed) {
		t.Fatalf("acquire with one sibling unsettled: %v", err)
	}
	p.release(tp, kerr.InvalidRecord) // the last sibling
	if err := p.acquire(tp); err != nil {
		t.Fatalf("acquire once every sibling settled: %v", err)
	}
}

// consumeUntil reads topic from the start until a record with value last.
func consumeUntil(t *testing.T, c interface{ ListenAddrs() []string }, topic, last string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("record %q never showed up in %s", last, topic)
		}
		for _, r := range fs.Records() {
			out = append(out, r)
			if string(r.Value) == last {
				return out
			}
		}
	}
}

func TestPartitionsFollowTheKeyHash(t *testing.T) {
	c := newCluster(t, 5, "orders")
	d := open(t, c, testConfig("orders"), "")
	hash := kgo.StickyKeyPartitioner(nil).ForTopic("orders")
	for _, key := range []string{"a", "b", "customer-1", "customer-2", "zz"} {
		r := &kgo.Record{Topic: "orders", Key: []byte(key)}
		p, err := d.prod.partition(testCtx(t, 5*time.Second), r)
		if err != nil {
			t.Fatal(err)
		}
		if want := int32(hash.Partition(r, 5)); p != want {
			t.Fatalf("key %q -> partition %d, want %d (Kafka's murmur2)", key, p, want)
		}
	}
}

func TestDoneMetadataRoundTrip(t *testing.T) {
	mk := func(states ...entryState) []*entry {
		var es []*entry
		for i, s := range states {
			es = append(es, &entry{rec: &kgo.Record{Offset: int64(10 + 2*i)}, state: s})
		}
		return es
	}
	es := mk(statePending, stateDone, stateDone, stateOut, stateDone)
	meta := encodeDone(es, nil, 0)
	if meta != "pv1:12-14,18" {
		t.Fatalf("encoded %q", meta)
	}
	rs := decodeDone(meta)
	for off, want := range map[int64]bool{10: false, 12: true, 13: true, 14: true, 16: false, 18: true, 19: false} {
		if inRanges(rs, off) != want {
			t.Errorf("offset %d done=%v, want %v", off, !want, want)
		}
	}
	for _, bad := range []string{"", "member-1", "pv1:", "pv1:x", "pv1:5-3", "pv1:1,,2"} {
		if rs := decodeDone(bad); rs != nil {
			t.Errorf("decodeDone(%q) = %v, want nil", bad, rs)
		}
	}
	var many []entryState
	for range 2000 {
		many = append(many, statePending, stateDone)
	}
	if got := encodeDone(mk(many...), nil, 0); len(got) > doneMetaMax {
		t.Fatalf("metadata of %d bytes exceeds the cap %d", len(got), doneMetaMax)
	}
}

// TestPublishGivesUpWhenBrokersAreDown: with the cluster gone, Publish
// returns within the delivery timeout (plus the on-wire grace) with
// ErrDeliveryTimeout, and a shorter caller deadline ends it sooner.
func TestPublishGivesUpWhenBrokersAreDown(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.ProducerOptions.DeliveryTimeout = time.Second
	d := open(t, c, cfg, "")
	publish(t, d, consumer.Job{ID: "warm-up"})
	c.Close()

	start := time.Now()
	err := d.Publish(context.Background(), []consumer.Job{{ID: "a"}, {ID: "b"}})
	took := time.Since(start)
	var be *consumer.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 {
		t.Fatalf("Publish with the brokers down: %v, want a BatchError with both jobs", err)
	}
	if !errors.Is(err, ErrDeliveryTimeout) {
		t.Fatalf("Publish with the brokers down: %v, want ErrDeliveryTimeout", err)
	}
	if limit := time.Second + onWireGrace + time.Second; took > limit {
		t.Fatalf("Publish took %s with a 1s delivery timeout, want under %s", took, limit)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = d.Publish(ctx, []consumer.Job{{ID: "c"}})
	took = time.Since(start)
	if err == nil {
		t.Fatal("Publish with the brokers down succeeded")
	}
	if limit := 200*time.Millisecond + onWireGrace + 500*time.Millisecond; took > limit {
		t.Fatalf("Publish took %s with a 200ms context, want under %s", took, limit)
	}
}

// TestPublishToUnknownPartitionsGivesUp: the partition count of the
// topic is not cached yet and no broker answers: the metadata lookup
// fails (at once, or at the latest when the delivery timeout passes).
func TestPublishToUnknownPartitionsGivesUp(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.ProducerOptions.DeliveryTimeout = time.Second
	d := open(t, c, cfg, "")
	c.Close()
	start := time.Now()
	err := d.Publish(context.Background(), []consumer.Job{{ID: "a"}})
	var be *consumer.BatchError
	if !errors.As(err, &be) || be.Failed[0] == nil {
		t.Fatalf("Publish with the brokers down: %v, want job 0 failed", err)
	}
	if took, limit := time.Since(start), time.Second+onWireGrace+time.Second; took > limit {
		t.Fatalf("Publish took %s with a 1s delivery timeout, want under %s", took, limit)
	}
}

// TestDriverErrorsAreOneLine: joined driver errors (Check, Stat.Error)
// read as one line and still match every cause.
func TestDriverErrorsAreOneLine(t *testing.T) {
	a, b := errors.New("first\nsecond"), consumer.ErrClosed
	err := joinLine(nil, a, b)
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Fatalf("joined error has a line break: %q", err)
	}
	if want := "first; second; " + consumer.ErrClosed.Error(); err.Error() != want {
		t.Fatalf("joined error %q, want %q", err, want)
	}
	if !errors.Is(err, a) || !errors.Is(err, b) {
		t.Fatalf("joined error %v does not match its causes", err)
	}
	if joinLine(nil, nil) != nil {
		t.Fatal("joinLine of nils is not nil")
	}
}
