package kafkajobs

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// dlqOutage makes the produce requests to topic fail (INVALID_RECORD, not
// retried by kgo) while it is on, and counts them. Other requests pass.
type dlqOutage struct {
	on       atomic.Bool
	attempts atomic.Int32
}

func failProducesTo(t *testing.T, c *kfake.Cluster, topic string) *dlqOutage {
	t.Helper()
	id := topicID(t, rawClient(t, c), topic) // newer produce requests name topics by id
	o := &dlqOutage{}
	o.on.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if !o.on.Load() {
			return nil, nil, false
		}
		for _, rt := range req.Topics {
			if rt.Topic == topic || rt.TopicID == id {
				o.attempts.Add(1)
				return failProduce(req, kerr.InvalidRecord.Code), nil, true
			}
		}
		return nil, nil, false
	})
	return o
}

// topicID asks the cluster for the id of topic.
func topicID(t *testing.T, cl *kgo.Client, topic string) [16]byte {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t, 5*time.Second), cl)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	for _, mt := range resp.Topics {
		if mt.Topic != nil && *mt.Topic == topic && mt.ErrorCode == 0 {
			return mt.TopicID
		}
	}
	t.Fatalf("no topic %s in the cluster", topic)
	return [16]byte{}
}

// waitAttempts fails the test unless the outage saw at least n produce
// requests within 15s.
func (o *dlqOutage) waitAttempts(t *testing.T, n int32) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for o.attempts.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d dead-letter produce attempts, want at least %d", o.attempts.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logSize returns how many records topic holds (the sum of its end
// offsets; the test topics are never truncated).
func logSize(t *testing.T, cl *kgo.Client, topic string) int64 {
	t.Helper()
	n, err := endOffsets(testCtx(t, 5*time.Second), cl, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	return n
}

// TestDeadLetterCopyFailureNeverRunsTheJobAgain: the dead-letter topic
// refuses produces. A delivery settled Dead is not handed out again while
// its copy keeps failing over several retry periods (with backoff, not in
// a tight loop); later records of its key wait for it, those of other
// keys run; the commit point stays before it and Stat counts it neither
// ready nor active. Once the topic takes produces again, exactly one copy
// lands with the headers the delivery had, the key goes on and the
// partition is committed past it.
func TestDeadLetterCopyFailureNeverRunsTheJobAgain(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-dlq")
	cfg := testConfig("orders")
	cfg.Ordering = OrderKey
	d := open(t, c, cfg, "orders-dlq")
	publish(t, d,
		consumer.Job{ID: "x", Name: "job", Key: "a", Payload: []byte("body"), Headers: map[string][]string{"user": {"u1"}}},
		consumer.Job{ID: "a2", Key: "a"},
		consumer.Job{ID: "b1", Key: "b"},
	)
	outage := failProducesTo(t, c, "orders-dlq")

	x := receive(t, d)
	b1 := receive(t, d)
	if x.ID != "x" || b1.ID != "b1" {
		t.Fatalf("got %s and %s, want x and b1", x.ID, b1.ID)
	}
	if err := x.Settle(testCtx(t, 10*time.Second), consumer.Outcome{Action: consumer.Dead, Reason: "boom"}); err == nil {
		t.Fatal("Settle(Dead) succeeded while the dead-letter topic refuses produces")
	}
	start := time.Now()
	settle(t, b1, consumer.Outcome{Action: consumer.Ack})

	// The first attempt was Settle's; the retries come after
	// copyRetryDelay and then twice that.
	cl := rawClient(t, c)
	for outage.attempts.Load() < 3 {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("only %d dead-letter produce attempts in 15s", outage.attempts.Load())
		}
		receiveNone(t, d, 200*time.Millisecond) // neither x again nor a2
	}
	if n := outage.attempts.Load(); n > 4 {
		t.Fatalf("%d dead-letter produce attempts within %s: no backoff", n, time.Since(start))
	}
	if got := committed(t, cl, testGroup, "orders", 0); got > 0 {
		t.Fatalf("committed offset %d passes the dead record at offset 0", got)
	}
	st, err := d.Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != 0 || st.Ready != 1 || st.Delayed != 0 {
		t.Fatalf("Stat with a pending dead-letter copy: %+v; want active 0, ready 1 (a2), delayed 0", st)
	}

	outage.on.Store(false)
	a2 := receive(t, d)
	if a2.ID != "a2" {
		t.Fatalf("got %s offset %d after the copy landed, want a2", a2.ID, PositionOf(a2).Offset)
	}
	waitCommitted(t, cl, "orders", 0, 1) // x and b1 done, a2 out
	settle(t, a2, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, cl, "orders", 0, 3)

	checkRecord(t, consumeAll(t, c, "orders-dlq", 1)[0], "a", "body", map[string]string{
		hdrID: "x", hdrJob: "job", hdrAttempt: "1", "user": "u1", hdrDeadReason: "boom",
		hdrSourceTopic: "orders", hdrSourcePartition: "0", hdrSourceOffset: "0",
	})
	if n := logSize(t, cl, "orders-dlq"); n != 1 {
		t.Fatalf("dead-letter topic holds %d records, want exactly 1", n)
	}
	receiveNone(t, d, 300*time.Millisecond)
}

// TestDeadLetterCopyPendingPartitionOrderingWaits: with ordering:
// partition, the records after a dead record whose copy is pending wait,
// as behind an in-place retry.
func TestDeadLetterCopyPendingPartitionOrderingWaits(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-dlq")
	d := open(t, c, testConfig("orders"), "orders-dlq")
	publish(t, d, consumer.Job{ID: "x", Key: "a"}, consumer.Job{ID: "y", Key: "b"})
	outage := failProducesTo(t, c, "orders-dlq")
	x := receive(t, d)
	if err := x.Settle(testCtx(t, 10*time.Second), consumer.Outcome{Action: consumer.Dead, Reason: "r"}); err == nil {
		t.Fatal("Settle(Dead) succeeded while the dead-letter topic refuses produces")
	}
	receiveNone(t, d, copyRetryDelay+500*time.Millisecond)
	outage.waitAttempts(t, 2)
	outage.on.Store(false)
	y := receive(t, d)
	if y.ID != "y" {
		t.Fatalf("got %s, want y", y.ID)
	}
	settle(t, y, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, rawClient(t, c), "orders", 0, 2)
}

// TestDeadLetterCopyPendingLeftOnClose: Close does not wait for a pending
// dead-letter copy; the record stays uncommitted and the next member of
// the group runs it again (the documented limit).
func TestDeadLetterCopyPendingLeftOnClose(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-dlq")
	cfg := testConfig("orders")
	d1 := open(t, c, cfg, "orders-dlq")
	publish(t, d1, consumer.Job{ID: "x"})
	outage := failProducesTo(t, c, "orders-dlq")
	if err := receive(t, d1).Settle(testCtx(t, 10*time.Second), consumer.Outcome{Action: consumer.Dead}); err == nil {
		t.Fatal("Settle(Dead) succeeded while the dead-letter topic refuses produces")
	}
	start := time.Now()
	if err := d1.Close(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %s with a pending dead-letter copy", took)
	}
	if got := committed(t, rawClient(t, c), testGroup, "orders", 0); got > 0 {
		t.Fatalf("committed offset %d passes the dead record", got)
	}
	outage.on.Store(false)
	d2 := open(t, c, cfg, "orders-dlq")
	again := receive(t, d2)
	if again.ID != "x" || PositionOf(again).Offset != 0 {
		t.Fatalf("next member got %s offset %d, want x offset 0", again.ID, PositionOf(again).Offset)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Dead})
	waitCommitted(t, rawClient(t, c), "orders", 0, 1)
	if n := logSize(t, rawClient(t, c), "orders-dlq"); n != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", n)
	}
}

// TestDeadLetterCopyPendingDroppedOnRevoke: both partitions hold a dead
// record whose copy keeps failing when a second member joins. The member
// that keeps a partition keeps retrying its copy; the moved partition's
// pending copy is dropped and its new owner runs the job again. Once the
// dead-letter topic works, it holds exactly one copy per source record.
func TestDeadLetterCopyPendingDroppedOnRevoke(t *testing.T) {
	c := newCluster(t, 2, "orders", "orders-dlq")
	cfg := testConfig("orders")
	d1 := open(t, c, cfg, "orders-dlq")
	k0, k1 := keyFor(t, d1, "orders", 0), keyFor(t, d1, "orders", 1)
	publish(t, d1, consumer.Job{ID: "x0", Key: k0}, consumer.Job{ID: "x1", Key: k1})
	outage := failProducesTo(t, c, "orders-dlq")
	for range 2 {
		dl := receive(t, d1)
		if err := dl.Settle(testCtx(t, 10*time.Second), consumer.Outcome{Action: consumer.Dead, Reason: "first"}); err == nil {
			t.Fatal("Settle(Dead) succeeded while the dead-letter topic refuses produces")
		}
	}
	outage.waitAttempts(t, 3)

	d2 := open(t, c, cfg, "orders-dlq")
	kept, moved := waitSplit(t, d1, d2)
	again := receive(t, d2)
	if PositionOf(again).Partition != moved || PositionOf(again).Offset != 0 {
		t.Fatalf("new owner of partition %d got %s on partition %d offset %d", moved, again.ID, PositionOf(again).Partition, PositionOf(again).Offset)
	}
	receiveNone(t, d1, 300*time.Millisecond)

	outage.on.Store(false)
	settle(t, again, consumer.Outcome{Action: consumer.Dead, Reason: "second"})
	cl := rawClient(t, c)
	waitCommitted(t, cl, "orders", kept, 1)
	waitCommitted(t, cl, "orders", moved, 1)
	// A copy d1 still retried for the moved partition would be due with
	// the kept partition's (they failed together): a little margin for it
	// to show up.
	time.Sleep(copyRetryDelay)
	recs := consumeAll(t, c, "orders-dlq", 2)
	reasons := map[string]string{}
	for _, r := range recs {
		p, _ := header(r, hdrSourcePartition)
		reason, _ := header(r, hdrDeadReason)
		reasons[p] = reason
	}
	want := map[int32]string{kept: "first", moved: "second"}
	for p, reason := range want {
		if got := reasons[strconv.Itoa(int(p))]; got != reason {
			t.Errorf("copy of partition %d has reason %q, want %q", p, got, reason)
		}
	}
	if n := logSize(t, cl, "orders-dlq"); n != 2 {
		t.Fatalf("dead-letter topic holds %d records, want 2", n)
	}
}

// dlqHold holds the first produce request to a topic at the broker until
// release is closed; then the broker takes it (code 0) or answers it with
// code. It counts the produce requests to the topic; the others pass.
type dlqHold struct {
	arrived  chan struct{}
	release  chan struct{}
	once     sync.Once
	attempts atomic.Int32
}

// answer lets the broker answer the held request.
func (h *dlqHold) answer() { h.once.Do(func() { close(h.release) }) }

func holdProducesTo(t *testing.T, c *kfake.Cluster, topic string, code int16) *dlqHold {
	t.Helper()
	id := topicID(t, rawClient(t, c), topic)
	h := &dlqHold{arrived: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(h.answer)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		for _, rt := range req.Topics {
			if rt.Topic != topic && rt.TopicID != id {
				continue
			}
			if h.attempts.Add(1) != 1 {
				return nil, nil, false
			}
			close(h.arrived)
			c.SleepControl(func() { <-h.release })
			if code != 0 {
				return failProduce(req, code), nil, true
			}
			return nil, nil, false
		}
		return nil, nil, false
	})
	return h
}

// countJob returns how many records of topic carry the job id.
func countJob(t *testing.T, c *kfake.Cluster, topic, id string) int {
	t.Helper()
	cl := rawClient(t, c)
	size := logSize(t, cl, topic)
	n := 0
	for _, r := range consumeAll(t, c, topic, int(size)) {
		if v, _ := header(r, hdrID); v == id {
			n++
		}
	}
	return n
}

// settleDeadUnanswered settles dl Dead with a short context while the
// broker holds the dead-letter produce: Settle ends in bounded time with
// an error, and the job is not handed out again.
func settleDeadUnanswered(t *testing.T, h *dlqHold, dl *consumer.Delivery) {
	t.Helper()
	start := time.Now()
	err := dl.Settle(testCtx(t, 300*time.Millisecond), consumer.Outcome{Action: consumer.Dead, Reason: "boom"})
	if err == nil {
		t.Fatal("Settle(Dead) succeeded while the broker holds the dead-letter produce")
	}
	if took := time.Since(start); took > onWireGrace+3*time.Second {
		t.Fatalf("Settle(Dead) took %s", took)
	}
	select {
	case <-h.arrived:
	default:
		t.Fatal("the dead-letter produce never reached the broker")
	}
}

// TestDeadLetterCopyUnansweredIsNotProducedAgain: the broker answers the
// dead-letter produce only long after the settle context ended. Meanwhile
// the copy is not produced again (its outcome is unknown), the partition
// waits and the commit point stays before the record; once the broker
// takes it, the topic holds exactly one copy and the partition goes on
// and is committed past the record.
func TestDeadLetterCopyUnansweredIsNotProducedAgain(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-dlq")
	d := open(t, c, testConfig("orders"), "orders-dlq")
	publish(t, d, consumer.Job{ID: "x", Key: "a"}, consumer.Job{ID: "y", Key: "b"})
	h := holdProducesTo(t, c, "orders-dlq", 0)

	settleDeadUnanswered(t, h, receive(t, d))
	// Several retry periods: an attempt would be made now without the fix.
	receiveNone(t, d, 3*copyRetryDelay)
	if n := h.attempts.Load(); n != 1 {
		t.Fatalf("%d dead-letter produce requests while the first is unanswered, want 1", n)
	}
	cl := rawClient(t, c)
	if got := committed(t, cl, testGroup, "orders", 0); got > 0 {
		t.Fatalf("committed offset %d passes the dead record at offset 0", got)
	}

	h.answer()
	y := receive(t, d)
	if y.ID != "y" {
		t.Fatalf("got %s offset %d after the copy landed, want y", y.ID, PositionOf(y).Offset)
	}
	waitCommitted(t, cl, "orders", 0, 1)
	settle(t, y, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, cl, "orders", 0, 2)
	time.Sleep(2 * copyRetryDelay) // room for a second copy to show up
	if n := countJob(t, c, "orders-dlq", "x"); n != 1 {
		t.Fatalf("dead-letter topic holds %d copies of x, want exactly 1", n)
	}
}

// TestDeadLetterCopyUnansweredThenFailedIsRetried: the broker holds the
// dead-letter produce past the settle context and then refuses it. Only
// then is the copy produced again; it lands once and the partition is
// committed past the record.
func TestDeadLetterCopyUnansweredThenFailedIsRetried(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-dlq")
	d := open(t, c, testConfig("orders"), "orders-dlq")
	publish(t, d, consumer.Job{ID: "x", Key: "a"}, consumer.Job{ID: "y", Key: "b"})
	h := holdProducesTo(t, c, "orders-dlq", kerr.InvalidRecord.Code)

	settleDeadUnanswered(t, h, receive(t, d))
	receiveNone(t, d, 3*copyRetryDelay)
	if n := h.attempts.Load(); n != 1 {
		t.Fatalf("%d dead-letter produce requests while the first is unanswered, want 1", n)
	}

	h.answer() // refused: the copy is produced again
	y := receive(t, d)
	if y.ID != "y" {
		t.Fatalf("got %s offset %d after the copy landed, want y", y.ID, PositionOf(y).Offset)
	}
	if n := h.attempts.Load(); n < 2 {
		t.Fatalf("%d dead-letter produce requests, want a retry after the refusal", n)
	}
	cl := rawClient(t, c)
	waitCommitted(t, cl, "orders", 0, 1)
	settle(t, y, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, cl, "orders", 0, 2)
	time.Sleep(2 * copyRetryDelay)
	if n := countJob(t, c, "orders-dlq", "x"); n != 1 {
		t.Fatalf("dead-letter topic holds %d copies of x, want exactly 1", n)
	}
}

// TestDeadLetterCopyUnansweredLeftOnClose: Close returns promptly while
// the broker still holds a dead-letter produce, with every produce
// promise run (none reaches the driver later), and leaves the record
// uncommitted.
func TestDeadLetterCopyUnansweredLeftOnClose(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-dlq")
	d := open(t, c, testConfig("orders"), "orders-dlq")
	publish(t, d, consumer.Job{ID: "x"})
	h := holdProducesTo(t, c, "orders-dlq", 0)
	settleDeadUnanswered(t, h, receive(t, d))

	start := time.Now()
	if err := d.Close(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %s with an unanswered dead-letter copy", took)
	}
	d.prod.mu.Lock()
	outstanding := d.prod.promises
	d.prod.mu.Unlock()
	if outstanding != 0 {
		t.Fatalf("%d produce promises still to run after Close", outstanding)
	}
	if got := committed(t, rawClient(t, c), testGroup, "orders", 0); got > 0 {
		t.Fatalf("committed offset %d passes the dead record", got)
	}
}
