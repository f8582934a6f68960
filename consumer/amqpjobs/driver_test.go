package amqpjobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// numbered returns jobs "1".."n" with ids prefix-i.
func numbered(prefix string, n int) []consumer.Job {
	jobs := make([]consumer.Job, n)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("%s-%d", prefix, i+1), Name: "Test", Payload: []byte(strconv.Itoa(i + 1))}
	}
	return jobs
}

// TestRetryKeepsOrder: on a classic queue, Retry(0) of #21 brings it back
// right away, ahead of #22..#100 that were already prefetched.
func TestRetryKeepsOrder(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	publish(t, d, numbered("o", 100)...)

	var got []string
	retried := false
	for len(got) < 101 {
		del := recv(t, d)
		got = append(got, string(del.Body))
		if string(del.Body) == "21" && !retried {
			retried = true
			if del.Attempt != 1 {
				t.Errorf("#21 first attempt = %d", del.Attempt)
			}
			settle(t, del, consumer.Outcome{Action: consumer.Retry})
			continue
		}
		if string(del.Body) == "21" && del.Attempt != 2 {
			t.Errorf("#21 after Retry: attempt %d, want 2", del.Attempt)
		}
		if string(del.Body) != "21" && del.Attempt != 1 {
			// Prefetched jobs went back with the retried one.
			t.Errorf("#%s: attempt %d, want 1", del.Body, del.Attempt)
		}
		settle(t, del, consumer.Outcome{Action: consumer.Ack})
	}
	var want []string
	for i := 1; i <= 100; i++ {
		want = append(want, strconv.Itoa(i))
		if i == 21 {
			want = append(want, "21")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("order:\n got %v\nwant %v", got, want)
	}
	if n := queueCount(t, cfg.Queue); n != 0 {
		t.Errorf("queue holds %d messages after all were acked", n)
	}
}

// TestRequeueDelay: Requeue(2s, headers) comes back after at least 2s with
// the new headers and attempt 2.
func TestRequeueDelay(t *testing.T) {
	t.Parallel()
	const delay = 2 * time.Second
	cfg := testConfig(t, delay)
	d := open(t, cfg, "")
	publish(t, d, consumer.Job{ID: "r-1", Name: "Test", Payload: []byte("x"), Headers: map[string][]string{"x-old": {"1"}, "x-change": {"a"}}})
	del := recv(t, d)
	start := time.Now()
	settle(t, del, consumer.Outcome{Action: consumer.Requeue, Delay: delay, Headers: map[string][]string{"x-change": {"b"}, "x-new": {"n1", "n2"}}})

	del2 := recv(t, d)
	if el := time.Since(start); el < delay {
		t.Errorf("requeued job came back after %v, want >= %v", el, delay)
	}
	if del2.ID != "r-1" || del2.Attempt != 2 || del2.Job != "Test" || string(del2.Body) != "x" {
		t.Errorf("requeued delivery = id %q attempt %d job %q body %q", del2.ID, del2.Attempt, del2.Job, del2.Body)
	}
	for k, v := range map[string][]string{"x-old": {"1"}, "x-change": {"b"}, "x-new": {"n1", "n2"}} {
		if !slices.Equal(del2.Headers[k], v) {
			t.Errorf("header %s = %q, want %q (all: %v)", k, del2.Headers[k], v, del2.Headers)
		}
	}
	settle(t, del2, consumer.Outcome{Action: consumer.Ack})
}

// TestDeadLetterQueue: a job retried until its last attempt and then Dead
// ends in the pipeline's dead_letter queue with its headers and reason.
func TestDeadLetterQueue(t *testing.T) {
	cfg := testConfig(t, 100*time.Millisecond)
	dlq := cfg.Queue + ".dlq"
	deleteQueues(t, dlq)
	d := open(t, cfg, dlq)
	publish(t, d, consumer.Job{ID: "dead-1", Name: "Fails", Payload: []byte("p"), Headers: map[string][]string{"x-user": {"u"}}})

	const maxAttempts = 3
	for attempt := 1; ; attempt++ {
		del := recv(t, d)
		if del.Attempt != attempt {
			t.Fatalf("delivery %d has attempt %d", attempt, del.Attempt)
		}
		if attempt == maxAttempts {
			settle(t, del, consumer.Outcome{Action: consumer.Dead, Reason: "max attempts reached"})
			break
		}
		// One in place, one through the delay queue.
		settle(t, del, consumer.Outcome{Action: consumer.Retry, Delay: time.Duration(attempt-1) * 100 * time.Millisecond})
	}
	var msgs []amqp.Delivery
	waitFor(t, 5*time.Second, "the dead-letter queue", func() bool {
		msgs = peekAll(t, dlq)
		return len(msgs) > 0
	})
	if len(msgs) != 1 {
		t.Fatalf("dead-letter queue holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	dec := decode(&m, "", 10, uuid.NewString)
	if dec.id != "dead-1" || dec.job != "Fails" || string(m.Body) != "p" || dec.attempt != maxAttempts {
		t.Errorf("dead message: id %q job %q body %q attempt %d", dec.id, dec.job, m.Body, dec.attempt)
	}
	if !slices.Equal(dec.headers["x-user"], []string{"u"}) || m.Headers[HeaderDeadReason] != "max attempts reached" || m.Headers[HeaderDeadQueue] != cfg.Queue {
		t.Errorf("dead message headers: %v (table %v)", dec.headers, m.Headers)
	}
	if n := queueCount(t, cfg.Queue); n != 0 {
		t.Errorf("work queue holds %d messages", n)
	}
}

// TestDeadLetterExchange: with x-dead-letter-exchange on the queue and no
// dead_letter, Dead is basic.nack(requeue=false) and the broker moves the
// message, headers intact.
func TestDeadLetterExchange(t *testing.T) {
	cfg := testConfig(t)
	dlq := cfg.Queue + ".dlx"
	deleteQueues(t, dlq)
	declareQueue(t, dlq)
	cfg.QueueHeaders = map[string]any{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
	d := open(t, cfg, "")
	publish(t, d, consumer.Job{ID: "dlx-1", Name: "Fails", Payload: []byte("p"), Headers: map[string][]string{"x-user": {"u"}}})
	settle(t, recv(t, d), consumer.Outcome{Action: consumer.Dead, Reason: "bad"})

	var msgs []amqp.Delivery
	waitFor(t, 5*time.Second, "the dead-letter exchange to route the job", func() bool {
		msgs = peekAll(t, dlq)
		return len(msgs) > 0
	})
	m := msgs[0]
	dec := decode(&m, "", 10, uuid.NewString)
	if len(msgs) != 1 || dec.id != "dlx-1" || !slices.Equal(dec.headers["x-user"], []string{"u"}) || m.Headers["x-death"] == nil {
		t.Errorf("dead-lettered: %d messages, id %q, headers %v, table %v", len(msgs), dec.id, dec.headers, m.Headers)
	}
}

// TestPushBatchConfirmed: PushBatch of 10,000 jobs returns once all are
// confirmed, and the queue holds exactly 10,000.
func TestPushBatchConfirmed(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	jobs := numbered("batch", 10000)
	start := time.Now()
	if err := d.Publish(ctx, jobs); err != nil {
		t.Fatalf("Publish 10000: %v", err)
	}
	t.Logf("10000 confirmed publishes in %v", time.Since(start))
	if n := queueCount(t, cfg.Queue); n != 10000 {
		t.Errorf("queue holds %d messages, want 10000", n)
	}
	st, err := d.Stat(ctx)
	if err != nil || st.Ready != 10000 || st.Consuming || st.Driver != DriverName || st.Queue != cfg.Queue {
		t.Errorf("Stat = %+v, %v", st, err)
	}
}

// TestPublishUnknownExchange: a publish to a missing exchange fails (the
// broker closes the publish channel) while the connection stays healthy.
func TestPublishUnknownExchange(t *testing.T) {
	cfg := testConfig(t)
	no := false
	cfg.Declare = &no
	cfg.Exchange = "pv-test.missing-" + uuid.NewString()
	cfg.Queue, cfg.RoutingKey = "", "rk"
	d := open(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.Publish(ctx, numbered("x", 3))
	var be *consumer.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 3 || !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("Publish to a missing exchange = %v, want a BatchError of 3 wrapping ErrNotConfirmed", err)
	}
	if rep := consumer.ReportOf(3, err); len(rep.Failed) != 3 {
		t.Errorf("Publish to a missing exchange: report %+v, want all 3 failed (certainly not routed), none in doubt", rep)
	}
	if !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), cfg.Exchange) {
		t.Errorf("error %q does not say that exchange %s does not exist", err, cfg.Exchange)
	}
	if _, err := d.Receive(ctx); !errors.Is(err, ErrNotConsuming) {
		t.Errorf("Receive on a push-only pipeline = %v", err)
	}
	if err := d.Check(); err != nil {
		t.Errorf("Check after a failed publish = %v (the connection is fine)", err)
	}
}

// TestThirdPartyMessage: a plain message without rr_* headers is consumed
// with a generated id, the job name from the routing key (or job_header),
// and its table entries as headers.
func TestThirdPartyMessage(t *testing.T) {
	cfg := testConfig(t)
	cfg.JobHeader = "x-job"
	d := open(t, cfg, "")
	err := admin(t, func(ch *amqp.Channel) error {
		if err := ch.Publish("", cfg.Queue, false, false, amqp.Publishing{Body: []byte("plain"), Headers: amqp.Table{"foo": "bar", "n": int32(7)}}); err != nil {
			return err
		}
		return ch.Publish("", cfg.Queue, false, false, amqp.Publishing{Body: []byte("named"), Headers: amqp.Table{"x-job": "App\\Job"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	del := recv(t, d)
	if _, err := uuid.Parse(del.ID); err != nil {
		t.Errorf("id %q is not a UUID", del.ID)
	}
	if del.Job != cfg.Queue || string(del.Body) != "plain" || del.Attempt != 1 || del.Priority != DefaultPriority {
		t.Errorf("third-party delivery: job %q body %q attempt %d priority %d", del.Job, del.Body, del.Attempt, del.Priority)
	}
	if !slices.Equal(del.Headers["foo"], []string{"bar"}) || !slices.Equal(del.Headers["n"], []string{"7"}) {
		t.Errorf("headers = %v", del.Headers)
	}
	// Retry(0) of a message without a stable id goes through a copy, so
	// the attempt still counts.
	settle(t, del, consumer.Outcome{Action: consumer.Retry})
	del2 := recv(t, d)
	if string(del2.Body) != "named" || del2.Job != `App\Job` {
		t.Errorf("second message: body %q job %q", del2.Body, del2.Job)
	}
	settle(t, del2, consumer.Outcome{Action: consumer.Ack})
	del3 := recv(t, d)
	if string(del3.Body) != "plain" || del3.ID != del.ID || del3.Attempt != 2 || !slices.Equal(del3.Headers["foo"], []string{"bar"}) {
		t.Errorf("retried third-party message: body %q id %q (was %q) attempt %d headers %v", del3.Body, del3.ID, del.ID, del3.Attempt, del3.Headers)
	}
	settle(t, del3, consumer.Outcome{Action: consumer.Ack})
}

// TestPauseResume: Pause gives prefetched messages back to the queue and
// stops delivery; Resume starts it again.
func TestPauseResume(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	publish(t, d, numbered("p", 3)...)
	first := recv(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "prefetched messages back in the queue", func() bool { return queueCount(t, cfg.Queue) == 2 })
	short, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if del, err := d.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive while paused = %v, %v", del, err)
	}
	settle(t, first, consumer.Outcome{Action: consumer.Ack}) // still settles while paused
	if err := d.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2", "3"} {
		del := recv(t, d)
		if string(del.Body) != want || del.Attempt != 1 {
			t.Errorf("after resume got %q attempt %d, want %q attempt 1", del.Body, del.Attempt, want)
		}
		settle(t, del, consumer.Outcome{Action: consumer.Ack})
	}
}

// TestStaleDelivery: a delivery from a connection that died cannot be
// settled (ErrStaleDelivery); the driver reconnects and the broker
// redelivers it.
func TestStaleDelivery(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	publish(t, d, numbered("s", 1)...)
	del := recv(t, d)
	old := d.current()
	_ = old.conn.Close() // what a broker restart or network cut looks like to the driver
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := del.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); !errors.Is(err, consumer.ErrStaleDelivery) {
		t.Fatalf("Settle of a delivery from a closed connection = %v, want ErrStaleDelivery", err)
	}
	again := recv(t, d)
	if again.ID != del.ID || again.Attempt != 2 {
		t.Errorf("redelivered id %q attempt %d, want %q attempt 2", again.ID, again.Attempt, del.ID)
	}
	if s := d.current(); s == nil || s == old {
		t.Error("no new session after the connection closed")
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
	if err := d.Check(); err != nil {
		t.Errorf("Check after reconnect = %v", err)
	}
}

// TestQuorumAttempt: on a quorum queue the attempt of a redelivery comes
// from x-delivery-count (here after a consumer died with the job).
func TestQuorumAttempt(t *testing.T) {
	cfg := testConfig(t)
	cfg.Durable = true
	cfg.QueueHeaders = map[string]any{"x-queue-type": "quorum"}
	d := open(t, cfg, "")
	publish(t, d, numbered("q", 1)...)
	if del := recv(t, d); del.Attempt != 1 {
		t.Fatalf("first attempt = %d", del.Attempt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = d.Close(ctx) // the job is never settled: the broker takes it back

	d2 := open(t, cfg, "")
	del := recv(t, d2)
	if del.Attempt != 2 {
		t.Errorf("attempt after a crash redelivery on a quorum queue = %d, want 2 (headers %v)", del.Attempt, del.Headers)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
}

// TestCloseUnsettled: Close returns ctx's error while a delivery is
// unsettled; Settle after Close returns ErrClosed and the job is back in
// the queue.
func TestCloseUnsettled(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	publish(t, d, numbered("c", 2)...)
	del := recv(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with an unsettled delivery = %v, want DeadlineExceeded", err)
	}
	if err := del.Settle(context.Background(), consumer.Outcome{Action: consumer.Ack}); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Settle after Close = %v, want ErrClosed", err)
	}
	if err := d.Publish(context.Background(), numbered("late", 1)); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := d.Check(); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Check after Close = %v", err)
	}
	waitFor(t, 5*time.Second, "both jobs back in the queue", func() bool { return queueCount(t, cfg.Queue) == 2 })
}

// TestMultipleAck: with multiple_ack, acking a later delivery does not
// settle an earlier one that is still running; both settle cleanly.
func TestMultipleAck(t *testing.T) {
	cfg := testConfig(t)
	cfg.MultipleAck = true
	d := open(t, cfg, "")
	publish(t, d, numbered("m", 3)...)
	a, b := recv(t, d), recv(t, d)
	settle(t, b, consumer.Outcome{Action: consumer.Ack})
	settle(t, a, consumer.Outcome{Action: consumer.Retry}) // would fail if b's ack had taken a along
	again := recv(t, d)
	if again.ID != a.ID || again.Attempt != 2 {
		t.Fatalf("after Retry got %q attempt %d, want %q attempt 2", again.ID, again.Attempt, a.ID)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
	settle(t, recv(t, d), consumer.Outcome{Action: consumer.Ack})
	if err := d.Check(); err != nil {
		t.Errorf("Check = %v (a bad multiple ack closes the channel)", err)
	}
	if s := d.current(); s == nil || s.gen != 1 {
		t.Errorf("the channel was replaced: a settlement hit an unknown delivery tag")
	}
	waitFor(t, 5*time.Second, "an empty queue", func() bool { return queueCount(t, cfg.Queue) == 0 })
}

func TestAttemptMemoBounded(t *testing.T) {
	m := newAttemptMemo(3)
	for i := range 10 {
		m.put(strconv.Itoa(i), i)
	}
	if _, ok := m.take("0"); ok {
		t.Error("oldest id kept beyond the bound")
	}
	if v, ok := m.take("9"); !ok || v != 9 {
		t.Errorf("take(9) = %d, %v", v, ok)
	}
	if _, ok := m.take("9"); ok {
		t.Error("take twice returned the attempt twice")
	}
	for i := range 100 {
		m.put(strconv.Itoa(i%5), i)
	}
	if len(m.m) > 3 || len(m.ring) > 3 {
		t.Errorf("memo grew: %d ids, %d in the ring", len(m.m), len(m.ring))
	}

	// An id put again is as new as its last put: the eviction of its
	// first slot does not drop it, the oldest other id goes instead.
	m = newAttemptMemo(3)
	m.put("a", 1)
	m.put("b", 1)
	m.put("c", 1)
	m.put("a", 2) // takes the slot of the first "a"
	m.put("d", 1) // evicts "b"
	if v, ok := m.take("a"); !ok || v != 2 {
		t.Errorf("take(a) after a second put = %d, %v; want 2, true", v, ok)
	}
	if _, ok := m.take("b"); ok {
		t.Error("b kept beyond the bound")
	}
	m.put("e", 1) // evicts "c"
	if _, ok := m.take("c"); ok {
		t.Error("c kept beyond the bound")
	}
	for _, id := range []string{"d", "e"} {
		if _, ok := m.take(id); !ok {
			t.Errorf("%s forgotten within the bound", id)
		}
	}
}

// TestDeleteQueueOnStop: Close deletes the queue when configured to.
func TestDeleteQueueOnStop(t *testing.T) {
	cfg := testConfig(t)
	cfg.DeleteQueueOnStop = true
	d := open(t, cfg, "")
	publish(t, d, numbered("del", 2)...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := admin(t, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(cfg.Queue, false, false, false, false, nil)
		return err
	})
	if !isNotFound(err) {
		t.Errorf("queue after Close with delete_queue_on_stop: passive declare = %v, want 404", err)
	}
}

// TestQuorumRetry: on a quorum queue (RabbitMQ 3.10) Retry(0) requeues
// at the tail; the attempt still counts up.
func TestQuorumRetry(t *testing.T) {
	cfg := testConfig(t)
	cfg.Durable = true
	cfg.QueueHeaders = map[string]any{"x-queue-type": "quorum"}
	d := open(t, cfg, "")
	publish(t, d, numbered("qr", 2)...)
	a := recv(t, d)
	settle(t, a, consumer.Outcome{Action: consumer.Retry})
	b := recv(t, d)
	settle(t, b, consumer.Outcome{Action: consumer.Ack})
	again := recv(t, d)
	if a.ID != "qr-1" || b.ID != "qr-2" || again.ID != "qr-1" || again.Attempt != 2 {
		t.Errorf("quorum retry: got %s, %s, then %s attempt %d; want qr-1, qr-2, qr-1 attempt 2", a.ID, b.ID, again.ID, again.Attempt)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
}

// TestLostAckNotRedone: a job acked just before the connection died, whose
// ack the broker never processed, is redelivered; the driver recognises
// the very same message (pv_msg) and settles it without handing it out.
func TestLostAckNotRedone(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	if err := d.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	publish(t, d, numbered("lost", 1)...)
	msgs := peekAll(t, cfg.Queue)
	if len(msgs) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(msgs))
	}
	tok, _ := msgs[0].Headers[hdrMsg].(string)
	if tok == "" {
		t.Fatalf("published message has no %s header: %v", hdrMsg, msgs[0].Headers)
	}
	if err := d.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	del := recv(t, d)
	// What ack() records when the basic.ack is written but then lost in
	// a connection close.
	old := d.current()
	d.acked.put(tok, int(old.gen))
	_ = old.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := del.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); !errors.Is(err, consumer.ErrStaleDelivery) {
		t.Fatalf("Settle on the closed connection = %v, want ErrStaleDelivery", err)
	}
	quiet, qcancel := context.WithTimeout(ctx, time.Second)
	defer qcancel()
	if again, err := d.Receive(quiet); err == nil {
		t.Fatalf("job %q handed out again after its ack was recorded", again.ID)
	}
	if s := d.current(); s == nil || s.gen == old.gen {
		t.Error("the driver did not reconnect")
	}
	// Close gives back whatever the driver holds; nothing may be left.
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := queueCount(t, cfg.Queue); n != 0 {
		t.Errorf("queue holds %d messages: the redelivered duplicate was not acked", n)
	}
}

// TestCloseDuringPublish: Close waits for a Publish in flight, which is
// sent and confirmed whole.
func TestCloseDuringPublish(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- d.Publish(ctx, numbered("cdp", 3000)) }()
	waitFor(t, 5*time.Second, "Publish to start", func() bool { return d.publishing.Load() > 0 })
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Publish in flight during Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish still running after Close returned")
	}
	if n := queueCount(t, cfg.Queue); n != 3000 {
		t.Errorf("Publish confirmed 3000 jobs but the queue holds %d", n)
	}
	if err := d.Publish(ctx, numbered("after", 1)); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Publish after Close = %v", err)
	}
}

// TestPublishConnectionLoss: publishes use a connection of their own
// (a broker that blocks publishers keeps reading acks); when it dies the
// driver reconnects and publishing works again.
func TestPublishConnectionLoss(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	old := d.current()
	if old.pubConn == old.conn {
		t.Fatal("a consuming pipeline publishes over its consume connection")
	}
	_ = old.pubConn.Close()
	waitFor(t, 10*time.Second, "a new session", func() bool {
		s := d.current()
		return s != nil && s.gen > old.gen
	})
	publish(t, d, numbered("pcl", 1)...)
	del := recv(t, d)
	if del.ID != "pcl-1" {
		t.Errorf("got %q", del.ID)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
}
