package amqpjobs

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// loginUser is the user the tests' broker connections log in as.
func loginUser(t testing.TB) string {
	t.Helper()
	u, err := amqp.ParseURI(brokerAddr())
	if err != nil {
		t.Fatalf("broker address: %v", err)
	}
	return u.Username
}

// fullMessage is a message with every basic property set and foreign
// table headers of several types, as a non-RoadRunner producer sends it.
func fullMessage(t testing.TB) amqp.Publishing {
	return amqp.Publishing{
		ContentType:     "application/json",
		ContentEncoding: "gzip",
		DeliveryMode:    amqp.Transient,
		Priority:        7,
		CorrelationId:   "corr-1",
		ReplyTo:         "replies",
		Expiration:      "600000",
		MessageId:       "msg-" + uuid.NewString(),
		Timestamp:       time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		Type:            "order.created",
		UserId:          loginUser(t),
		AppId:           "shop",
		Headers: amqp.Table{
			"x-tenant": "acme",
			"n":        int32(7),
			"nested":   amqp.Table{"a": "b"},
		},
		Body: []byte(`{"order":1}`),
	}
}

// publishRaw publishes p to queue on a channel of its own, as another
// producer would.
func publishRaw(t testing.TB, queue string, p amqp.Publishing) {
	t.Helper()
	err := admin(t, func(ch *amqp.Channel) error {
		return ch.PublishWithContext(context.Background(), "", queue, false, false, p)
	})
	if err != nil {
		t.Fatalf("publish to %s: %v", queue, err)
	}
}

// checkCopy fails unless m, read back from the broker, is orig with its
// body, properties (expiration as wantExp) and foreign headers intact and
// x-attempt = attempt.
func checkCopy(t testing.TB, m amqp.Delivery, orig amqp.Publishing, wantExp string, attempt int) {
	t.Helper()
	got := amqp.Publishing{
		ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, DeliveryMode: m.DeliveryMode,
		Priority: m.Priority, CorrelationId: m.CorrelationId, ReplyTo: m.ReplyTo, Expiration: m.Expiration,
		MessageId: m.MessageId, Timestamp: m.Timestamp.UTC(), Type: m.Type, UserId: m.UserId, AppId: m.AppId,
		Body: m.Body,
	}
	want := orig
	want.Headers, want.Expiration = nil, wantExp
	if !reflect.DeepEqual(got, want) {
		t.Errorf("copy's properties:\n got %+v\nwant %+v", got, want)
	}
	for k, v := range orig.Headers {
		if !reflect.DeepEqual(m.Headers[k], v) {
			t.Errorf("foreign header %s = %#v, want %#v as an AMQP header", k, m.Headers[k], v)
		}
	}
	if a, ok := toInt(m.Headers[hdrAttempt]); !ok || a != int64(attempt) {
		t.Errorf("x-attempt = %v, want %d", m.Headers[hdrAttempt], attempt)
	}
}

// ownHeaders returns the rr_headers of m.
func ownHeaders(t testing.TB, m amqp.Delivery) map[string][]string {
	t.Helper()
	b, _ := m.Headers[hdrHeaders].([]byte)
	h, ok := decodeUserHeaders(b)
	if !ok {
		t.Fatalf("rr_headers %q is not a header object", b)
	}
	return h
}

// pause pauses d or fails, so that the test reads the queue itself.
func pause(t testing.TB, d *Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
}

// TestRetryDelayCopyKeepsMessage: Retry with a delay of a third-party
// message comes back from the delay queue as the same message: every
// property but expiration (recorded in x-original-expiration), foreign
// headers as AMQP headers, the worker's changed header in rr_headers,
// x-attempt 2, and CC not routed a second time.
func TestRetryDelayCopyKeepsMessage(t *testing.T) {
	const delay = 300 * time.Millisecond
	cfg := testConfig(t, delay)
	ccq := cfg.Queue + ".cc"
	deleteQueues(t, ccq)
	declareQueue(t, ccq)
	d := open(t, cfg, "")
	orig := fullMessage(t)
	withCC := orig
	withCC.Headers = maps.Clone(orig.Headers)
	withCC.Headers["CC"] = []any{ccq}
	publishRaw(t, cfg.Queue, withCC)

	del := recv(t, d)
	pause(t, d)
	// The worker sends back every header it got, one changed.
	h := maps.Clone(del.Headers)
	h["x-note"] = []string{"retried"}
	settle(t, del, consumer.Outcome{Action: consumer.Retry, Delay: delay, Headers: h})

	waitFor(t, 10*time.Second, "the copy back from the delay queue", func() bool { return queueCount(t, cfg.Queue) > 0 })
	msgs := peekAll(t, cfg.Queue)
	if len(msgs) != 1 {
		t.Fatalf("work queue holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	checkCopy(t, m, orig, "", 2)
	if m.Headers[HeaderOriginalExpiration] != orig.Expiration {
		t.Errorf("%s = %v, want %q", HeaderOriginalExpiration, m.Headers[HeaderOriginalExpiration], orig.Expiration)
	}
	if _, ok := m.Headers["CC"]; ok {
		t.Errorf("CC copied onto the retry: %v", m.Headers["CC"])
	}
	if n := queueCount(t, ccq); n != 1 {
		t.Errorf("CC queue holds %d messages, want the original's 1", n)
	}
	own := ownHeaders(t, m)
	if !slices.Equal(own["x-note"], []string{"retried"}) || own["x-tenant"] != nil || own["n"] != nil {
		t.Errorf("rr_headers = %v, want only the changed x-note", own)
	}
	dec := decode(&m, "", 10, uuid.NewString)
	if dec.id != del.ID || dec.thirdParty || !slices.Equal(dec.headers["x-tenant"], []string{"acme"}) {
		t.Errorf("decoded copy: id %q (was %q) third-party %v headers %v", dec.id, del.ID, dec.thirdParty, dec.headers)
	}
}

// TestDeadLetterCopyKeepsMessage: a RoadRunner-style message with
// foreign headers, retried with a changed header (a copy straight to the
// work queue, which keeps expiration) and then Dead, lands in the
// dead_letter queue as the same message: properties (expiration moved to
// x-original-expiration), foreign headers, rr_headers with the change,
// x-attempt 3 (see the peek) and the dead-letter headers.
func TestDeadLetterCopyKeepsMessage(t *testing.T) {
	cfg := testConfig(t)
	dlq := cfg.Queue + ".dlq"
	deleteQueues(t, dlq)
	d := open(t, cfg, dlq)
	orig := fullMessage(t)
	foreign := maps.Clone(orig.Headers)
	orig.Headers[hdrID] = "dead-props"
	orig.Headers[hdrJob] = "App\\Job"
	orig.Headers[hdrHeaders] = []byte(`{"x-user":["u"]}`)
	publishRaw(t, cfg.Queue, orig)
	orig.Headers = foreign

	del := recv(t, d)
	pause(t, d)
	settle(t, del, consumer.Outcome{Action: consumer.Retry, Headers: map[string][]string{"x-user": {"v"}}})
	waitFor(t, 5*time.Second, "the retried copy", func() bool { return queueCount(t, cfg.Queue) > 0 })
	checkCopy(t, peekAll(t, cfg.Queue)[0], orig, orig.Expiration, 2)
	if err := d.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The peek (basic.get, not acked) was a delivery: the broker marks
	// the message redelivered, which counts an attempt.
	del = recv(t, d)
	if del.Attempt != 3 || del.Job != "App\\Job" || !slices.Equal(del.Headers["x-user"], []string{"v"}) {
		t.Fatalf("retried delivery: attempt %d job %q headers %v", del.Attempt, del.Job, del.Headers)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Dead, Reason: "boom"})

	var msgs []amqp.Delivery
	waitFor(t, 5*time.Second, "the dead-letter queue", func() bool {
		msgs = peekAll(t, dlq)
		return len(msgs) > 0
	})
	m := msgs[0]
	wantDead := orig
	wantDead.DeliveryMode = amqp.Persistent // a dead letter survives a broker restart
	checkCopy(t, m, wantDead, "", 3)
	if m.Headers[HeaderOriginalExpiration] != orig.Expiration || m.Headers[HeaderDeadReason] != "boom" ||
		m.Headers[HeaderDeadQueue] != cfg.Queue || m.Headers[hdrID] != "dead-props" {
		t.Errorf("dead letter's headers: %v", m.Headers)
	}
	if own := ownHeaders(t, m); !reflect.DeepEqual(own, map[string][]string{"x-user": {"v"}}) {
		t.Errorf("rr_headers = %v, want x-user v only", own)
	}
}

// TestCopyOf: what a copy leaves out or moves, per target, without a
// broker: another user's user_id, CC/BCC and the broker's x-death;
// expiration only on a copy to the work queue; a foreign header the
// worker changed moves into rr_headers, forged broker headers are ignored.
func TestCopyOf(t *testing.T) {
	st := &settlement{d: &Driver{name: "pipe", user: "guest"}}
	st.in.m = amqp.Delivery{
		UserId: "alice", Expiration: "5000", MessageId: "m-1", Body: []byte("b"),
		Headers: amqp.Table{
			"CC": []any{"q"}, "BCC": []any{"q"}, "x-death": []any{amqp.Table{"count": int64(1)}},
			"x-tenant": "acme", "x-user": "a",
		},
	}
	st.dec = decode(&st.in.m, "", 10, uuid.NewString)
	st.del = consumer.Delivery{ID: st.dec.id, Job: st.dec.job, Headers: st.dec.headers, Body: st.in.m.Body}
	o := consumer.Outcome{Headers: map[string][]string{"x-tenant": {"acme"}, "x-user": {"b"}, "x-death": {"forged"}}}
	for target, wantExp := range map[copyTarget]string{toQueue: "5000", viaDelay: "", toDeadLetter: ""} {
		p, err := st.copyOf(o, 3, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Expiration != wantExp || p.UserId != "" || p.MessageId != "m-1" {
			t.Errorf("target %d: expiration %q user %q message id %q", target, p.Expiration, p.UserId, p.MessageId)
		}
		if _, ok := p.Headers[HeaderOriginalExpiration]; ok != (wantExp == "") {
			t.Errorf("target %d: %s = %v", target, HeaderOriginalExpiration, p.Headers[HeaderOriginalExpiration])
		}
		for _, k := range []string{"CC", "BCC", "x-death", "x-user"} {
			if v, ok := p.Headers[k]; ok {
				t.Errorf("target %d: table header %s = %v copied", target, k, v)
			}
		}
		own, _ := decodeUserHeaders(p.Headers[hdrHeaders].([]byte))
		if p.Headers["x-tenant"] != "acme" || !reflect.DeepEqual(own, map[string][]string{"x-user": {"b"}}) {
			t.Errorf("target %d: x-tenant %v, rr_headers %v", target, p.Headers["x-tenant"], own)
		}
	}
	st.in.m.UserId = "guest"
	if p, _ := st.copyOf(o, 1, toQueue, nil); p.UserId != "guest" {
		t.Errorf("own user_id not kept: %q", p.UserId)
	}
}

// TestCopyDropsStaleBookkeepingFromRRHeaders: rr_headers of a message that
// went through RoadRunner's Requeue holds its table entries stringified;
// a copy keeps the user's headers from it but not the stale attempt,
// broker hop or message id entries (the table carries fresh ones).
func TestCopyDropsStaleBookkeepingFromRRHeaders(t *testing.T) {
	cfg := testConfig(t)
	d := open(t, cfg, "")
	publishRaw(t, cfg.Queue, amqp.Publishing{Body: []byte("b"), Headers: amqp.Table{
		"rr_id": "rr-1", "rr_job": "App\\Job", "x-attempt": int64(1),
		"rr_headers": []byte(`{"user":["u"],"kept":["k"],"x-attempt":["1"],"x-death":["stale"],"pv_msg":["old"],"rr_id":["old"]}`),
	}})
	del := recv(t, d)
	pause(t, d)
	settle(t, del, consumer.Outcome{Action: consumer.Requeue, Headers: map[string][]string{"user": {"v"}}})
	waitFor(t, 5*time.Second, "the copy", func() bool { return queueCount(t, cfg.Queue) > 0 })
	m := peekAll(t, cfg.Queue)[0]
	own := ownHeaders(t, m)
	for _, k := range []string{"x-attempt", "x-death", "pv_msg", "rr_id"} {
		if v, ok := own[k]; ok {
			t.Errorf("the copy's rr_headers carries %s=%v (table x-attempt=%v)", k, v, m.Headers[hdrAttempt])
		}
	}
	if !slices.Equal(own["user"], []string{"v"}) || !slices.Equal(own["kept"], []string{"k"}) {
		t.Errorf("rr_headers = %v, want user=[v] (the worker's) and kept=[k]", own)
	}
	if a, ok := toInt(m.Headers[hdrAttempt]); !ok || a != 2 {
		t.Errorf("x-attempt = %v, want 2", m.Headers[hdrAttempt])
	}
}
