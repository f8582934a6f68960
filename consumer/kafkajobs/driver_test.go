package kafkajobs

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

func TestPublishReceiveRoundTrip(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")

	publish(t, d, consumer.Job{
		ID: "job-1", Name: "App\\Jobs\\Mail", Payload: []byte(`{"to":"a@b"}`), Key: "customer-7",
		Priority: 4, Headers: map[string][]string{"trace": {"t1"}, "tags": {"a", "b"}},
	})
	dl := receive(t, d)
	want := consumer.Delivery{
		ID: "job-1", Job: "App\\Jobs\\Mail", Pipeline: "orders", Driver: "kafka", Queue: "orders",
		Headers: map[string][]string{"trace": {"t1"}, "tags": {"a", "b"}}, Body: []byte(`{"to":"a@b"}`),
		Attempt: 1, Key: "customer-7", Priority: 4, Context: Position{Topic: "orders", Partition: 0, Offset: 0},
	}
	if dl.ID != want.ID || dl.Job != want.Job || dl.Pipeline != want.Pipeline || dl.Driver != want.Driver ||
		dl.Queue != want.Queue || !reflect.DeepEqual(dl.Headers, want.Headers) || string(dl.Body) != string(want.Body) ||
		dl.Attempt != want.Attempt || dl.Key != want.Key || dl.Priority != want.Priority ||
		PositionOf(dl) != want.Context {
		t.Fatalf("delivery %+v\nwant %+v", dl, &want)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, rawClient(t, c), "orders", 0, 1)

	if err := dl.Settle(testCtx(t, time.Second), consumer.Outcome{Action: consumer.Ack}); !errors.Is(err, consumer.ErrAlreadySettled) {
		t.Fatalf("second Settle: %v, want ErrAlreadySettled", err)
	}
}

func TestJobWithoutKeyUsesIDAsKey(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	publish(t, d, consumer.Job{ID: "id-9", Name: "n", Payload: []byte("x")})
	r := consumeAll(t, c, "orders", 1)[0]
	if string(r.Key) != "id-9" {
		t.Fatalf("record key %q, want the job id", r.Key)
	}
	for k, want := range map[string]string{hdrID: "id-9", hdrJob: "n", hdrPipeline: "orders", hdrPriority: "10"} {
		if got, _ := header(r, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestThirdPartyRecords(t *testing.T) {
	c := newCluster(t, 1, "events")
	cfg := testConfig("events")
	cfg.JobHeader = "type"
	d := open(t, c, cfg, "")

	raw := rawClient(t, c)
	ctx := testCtx(t, 5*time.Second)
	if err := raw.ProduceSync(ctx,
		&kgo.Record{Topic: "events", Value: []byte("a"), Headers: []kgo.RecordHeader{{Key: "type", Value: []byte("user.created")}}},
		&kgo.Record{Topic: "events", Value: []byte("b")},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	first := receive(t, d)
	if first.ID != "events/0/0" || first.Job != "user.created" || first.Attempt != 1 || first.Priority != DefaultPriority ||
		!reflect.DeepEqual(first.Headers, map[string][]string{"type": {"user.created"}}) {
		t.Fatalf("first third-party delivery: %+v", first)
	}
	settle(t, first, consumer.Outcome{Action: consumer.Ack})
	second := receive(t, d)
	if second.ID != "events/0/1" || second.Job != "events" {
		t.Fatalf("second third-party delivery: id %q job %q, want events/0/1 and the topic", second.ID, second.Job)
	}
	settle(t, second, consumer.Outcome{Action: consumer.Ack})

	// A record pushed by RoadRunner's kafka driver: key = job id, rr_job
	// and rr_priority headers, no rr_id.
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: "events", Key: []byte("rr-uuid-1"), Value: []byte("c"),
		Headers: []kgo.RecordHeader{{Key: "rr_job", Value: []byte("App\\Job")}, {Key: "rr_priority", Value: []byte("3")}}},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	third := receive(t, d)
	if third.ID != "rr-uuid-1" || third.Job != "App\\Job" || third.Priority != 3 {
		t.Fatalf("RoadRunner record: id %q job %q priority %d", third.ID, third.Job, third.Priority)
	}
	settle(t, third, consumer.Outcome{Action: consumer.Ack})
}

func TestPartitionOrderingHandsOutOneAtATime(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	publish(t, d, consumer.Job{ID: "a", Key: "k1"}, consumer.Job{ID: "b", Key: "k2"})
	a := receive(t, d)
	receiveNone(t, d, 300*time.Millisecond)
	settle(t, a, consumer.Outcome{Action: consumer.Ack})
	b := receive(t, d)
	if b.ID != "b" {
		t.Fatalf("got %s, want b", b.ID)
	}
	settle(t, b, consumer.Outcome{Action: consumer.Ack})
}

func TestKeyOrderingRunsKeysInParallel(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.Ordering = OrderKey
	d := open(t, c, cfg, "")
	publish(t, d,
		consumer.Job{ID: "a1", Key: "a"}, consumer.Job{ID: "b1", Key: "b"},
		consumer.Job{ID: "a2", Key: "a"}, consumer.Job{ID: "b2", Key: "b"},
	)
	a1, b1 := receive(t, d), receive(t, d)
	if a1.ID != "a1" || b1.ID != "b1" {
		t.Fatalf("got %s, %s; want a1, b1 in parallel", a1.ID, b1.ID)
	}
	receiveNone(t, d, 300*time.Millisecond) // a2 and b2 wait for their keys
	settle(t, b1, consumer.Outcome{Action: consumer.Ack})
	b2 := receive(t, d)
	if b2.ID != "b2" {
		t.Fatalf("got %s, want b2", b2.ID)
	}
	settle(t, a1, consumer.Outcome{Action: consumer.Ack})
	a2 := receive(t, d)
	if a2.ID != "a2" {
		t.Fatalf("got %s, want a2", a2.ID)
	}
	settle(t, a2, consumer.Outcome{Action: consumer.Ack})
	settle(t, b2, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, rawClient(t, c), "orders", 0, 4)
}

func TestRetryInPlaceKeepsOrderAndCountsAttempts(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	publish(t, d, consumer.Job{ID: "1", Key: "k"}, consumer.Job{ID: "2", Key: "k"})

	first := receive(t, d)
	start := time.Now()
	settle(t, first, consumer.Outcome{Action: consumer.Retry, Delay: 300 * time.Millisecond})
	again := receive(t, d)
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("retried job came back after %s, before its delay", waited)
	}
	if again.ID != "1" || again.Attempt != 2 || PositionOf(again).Offset != 0 {
		t.Fatalf("after Retry got id %s attempt %d offset %d; want 1, 2, 0", again.ID, again.Attempt, PositionOf(again).Offset)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Requeue, Headers: map[string][]string{"step": {"2"}}})
	third := receive(t, d)
	if third.ID != "1" || third.Attempt != 3 || !reflect.DeepEqual(third.Headers["step"], []string{"2"}) {
		t.Fatalf("after Requeue got id %s attempt %d headers %v", third.ID, third.Attempt, third.Headers)
	}
	settle(t, third, consumer.Outcome{Action: consumer.Release})
	fourth := receive(t, d)
	if fourth.ID != "1" || fourth.Attempt != 3 {
		t.Fatalf("after Release got id %s attempt %d; want 1, 3", fourth.ID, fourth.Attempt)
	}
	cl := rawClient(t, c)
	if got := committed(t, cl, testGroup, "orders", 0); got != -1 {
		t.Fatalf("committed %d while job 1 is still running", got)
	}
	settle(t, fourth, consumer.Outcome{Action: consumer.Ack})
	next := receive(t, d)
	if next.ID != "2" || next.Attempt != 1 {
		t.Fatalf("got %s attempt %d, want 2 attempt 1", next.ID, next.Attempt)
	}
	waitCommitted(t, cl, "orders", 0, 1)
	settle(t, next, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, cl, "orders", 0, 2)
}

func TestRetryTopicProducesCopyWithAttempt(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-retry")
	cfg := testConfig("orders")
	cfg.ConsumerOptions.Topics = []string{"orders", "orders-retry"}
	cfg.RetryTopic = "orders-retry"
	d := open(t, c, cfg, "")
	publish(t, d, consumer.Job{ID: "r1", Name: "job", Payload: []byte("p"), Headers: map[string][]string{"h": {"1"}}})

	dl := receive(t, d)
	settle(t, dl, consumer.Outcome{Action: consumer.Requeue, Delay: 200 * time.Millisecond, Headers: map[string][]string{"h": {"2"}}})
	waitCommitted(t, rawClient(t, c), "orders", 0, 1)
	copyDl := receive(t, d)
	if copyDl.ID != "r1" || PositionOf(copyDl).Topic != "orders-retry" || copyDl.Attempt != 2 ||
		!reflect.DeepEqual(copyDl.Headers, map[string][]string{"h": {"2"}}) || string(copyDl.Body) != "p" {
		t.Fatalf("retry copy: %+v", copyDl)
	}
	settle(t, copyDl, consumer.Outcome{Action: consumer.Ack})
}

// TestRetryCopyFailureRetriesInPlace: when the retry copy cannot be
// produced (the retry topic does not exist), Settle returns the error and
// the record is retried in place as without retry_topic: it comes back
// as the next attempt, with the headers the worker asked for, not before
// the delay the worker asked for.
func TestRetryCopyFailureRetriesInPlace(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.RetryTopic = "orders-retry-missing"
	d := open(t, c, cfg, "")
	publish(t, d, consumer.Job{ID: "j", Headers: map[string][]string{"h": {"1"}}})

	dl := receive(t, d)
	delay := copyRetryDelay + 200*time.Millisecond
	start := time.Now()
	err := dl.Settle(testCtx(t, 10*time.Second), consumer.Outcome{
		Action: consumer.Requeue, Delay: delay, Headers: map[string][]string{"h": {"2"}},
	})
	if err == nil {
		t.Fatal("Settle succeeded without a retry topic to produce to")
	}
	again := receive(t, d)
	waited := time.Since(start)
	if again.ID != "j" || PositionOf(again).Offset != 0 || again.Attempt != 2 || !reflect.DeepEqual(again.Headers, map[string][]string{"h": {"2"}}) {
		t.Fatalf("after the failed copy got id %s offset %d attempt %d headers %v; want j, 0, 2, h=[2]",
			again.ID, PositionOf(again).Offset, again.Attempt, again.Headers)
	}
	if waited < delay {
		t.Fatalf("retried in place after %s, before the requested %s", waited, delay)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
}

func TestDeadLetterLandsOnDLQWithHeaders(t *testing.T) {
	c := newCluster(t, 1, "orders", "orders-dlq")
	d := open(t, c, testConfig("orders"), "orders-dlq")
	publish(t, d, consumer.Job{ID: "d1", Name: "job", Key: "k", Payload: []byte("body"), Headers: map[string][]string{"user": {"u1"}}})
	dl := receive(t, d)
	settle(t, dl, consumer.Outcome{Action: consumer.Dead, Reason: "boom"})
	waitCommitted(t, rawClient(t, c), "orders", 0, 1)

	checkRecord(t, consumeAll(t, c, "orders-dlq", 1)[0], "k", "body", map[string]string{
		hdrID: "d1", hdrJob: "job", hdrAttempt: "1", "user": "u1", hdrDeadReason: "boom",
		hdrSourceTopic: "orders", hdrSourcePartition: "0", hdrSourceOffset: "0",
	})
}

func TestDeadWithoutTargetDrops(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	publish(t, d, consumer.Job{ID: "x"}, consumer.Job{ID: "y"})
	settle(t, receive(t, d), consumer.Outcome{Action: consumer.Dead, Reason: "bad"})
	next := receive(t, d)
	if next.ID != "y" {
		t.Fatalf("got %s, want y", next.ID)
	}
	waitCommitted(t, rawClient(t, c), "orders", 0, 1)
	settle(t, next, consumer.Outcome{Action: consumer.Ack})
}

func TestDelayedPublishWaits(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	start := time.Now()
	publish(t, d, consumer.Job{ID: "late", Delay: 400 * time.Millisecond})
	dl := receive(t, d)
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Fatalf("delayed job handed out after %s", waited)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
}

func TestPushOnlyPipeline(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := Config{ConsumerOptions: ConsumerOptions{}}
	d := open(t, c, cfg, "")
	if _, err := d.Receive(testCtx(t, time.Second)); !errors.Is(err, ErrNotConsuming) {
		t.Fatalf("Receive on a push-only pipeline: %v", err)
	}
	err := d.Publish(testCtx(t, time.Second), []consumer.Job{{ID: "1"}})
	var be *consumer.BatchError
	if !errors.As(err, &be) || !errors.Is(err, ErrNoTopic) {
		t.Fatalf("Publish without a topic: %v", err)
	}
	if st, err := d.Stat(testCtx(t, time.Second)); err != nil || st.Ready != -1 {
		t.Fatalf("Stat: %+v, %v", st, err)
	}
}

func TestCloseThenEverythingReturnsErrClosed(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	publish(t, d, consumer.Job{ID: "1"})
	dl := receive(t, d)
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	if err := d.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(testCtx(t, time.Second)); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.Receive(testCtx(t, time.Second)); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	if err := d.Publish(testCtx(t, time.Second), []consumer.Job{{ID: "2"}}); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := d.Check(); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Check after Close: %v", err)
	}
	waitCommitted(t, rawClient(t, c), "orders", 0, 1)
}

func TestNewRejectsBadConfigAndDeadBrokers(t *testing.T) {
	ctx := testCtx(t, 5*time.Second)
	_, err := New(ctx, "p", Global{}, Config{Ordering: "x"}, "", nil)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with a bad config: %v", err)
	}
	c := newCluster(t, 1, "orders")
	addrs := c.ListenAddrs()
	c.Close()
	_, err = New(ctx, "p", Global{Brokers: addrs, Ping: Ping{Timeout: 300 * time.Millisecond}}, testConfig("orders"), "", nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("New with a dead broker: %v", err)
	}
}

func TestStatAndCheck(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	jobs := make([]consumer.Job, 5)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: strconv.Itoa(i)}
	}
	publish(t, d, jobs...)
	dl := receive(t, d)
	st, err := d.Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != 1 || st.Ready != 4 || st.Delayed != 0 || st.Queue != "orders" || st.Driver != "kafka" || !st.Consuming {
		t.Fatalf("Stat: %+v", st)
	}
	if err := d.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Retry, Delay: time.Hour})
	st, _ = d.Stat(context.Background())
	if st.Delayed != 1 || st.Active != 0 {
		t.Fatalf("Stat after a delayed retry: %+v", st)
	}
}

func TestCheckGoesRedWhenTheBrokerDies(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	publish(t, d, consumer.Job{ID: "1"})
	settle(t, receive(t, d), consumer.Outcome{Action: consumer.Ack})
	if err := d.Check(); err != nil {
		t.Fatalf("Check on a healthy cluster: %v", err)
	}
	c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for d.Check() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Check still healthy 15s after the broker died")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, _ := d.Stat(context.Background()); st.Consuming || st.Error == "" || strings.ContainsAny(st.Error, "\r\n") {
		t.Fatalf("Stat with a dead broker: %+v (want not consuming, a one-line error)", st)
	}
	if err := d.Check(); err == nil || strings.ContainsAny(err.Error(), "\r\n") {
		t.Fatalf("Check with a dead broker: %q, want a one-line error", err)
	}
}

func TestConsumeRegexp(t *testing.T) {
	c := newCluster(t, 1, "orders.eu", "orders.us", "billing")
	cfg := testConfig("orders\\..*")
	cfg.ConsumerOptions.ConsumeRegexp = true
	d := open(t, c, cfg, "")
	raw := rawClient(t, c)
	ctx := testCtx(t, 5*time.Second)
	for _, topic := range []string{"orders.eu", "billing", "orders.us"} {
		if err := raw.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(topic)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for range 2 {
		dl := receive(t, d)
		got[PositionOf(dl).Topic] = true
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	if !got["orders.eu"] || !got["orders.us"] {
		t.Fatalf("consumed topics %v, want orders.eu and orders.us", got)
	}
	receiveNone(t, d, 300*time.Millisecond)
	if err := d.Publish(ctx, []consumer.Job{{ID: "x"}}); !errors.Is(err, ErrNoTopic) {
		t.Fatalf("Publish on a regexp pipeline: %v, want ErrNoTopic", err)
	}
}
