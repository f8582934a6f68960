package amqpjobs

import (
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestEncodeDecode: what Publish writes, the consumer reads back.
func TestEncodeDecode(t *testing.T) {
	j := consumer.Job{
		ID: "id-1", Name: `App\Job`, Payload: []byte("body"), Priority: 3, Key: "k", AutoAck: true,
		Delay:   5 * time.Second,
		Headers: map[string][]string{"x-a": {"1", "2"}, hdrRoutingKey: {"other"}},
	}
	pub, key, err := encode(j, "pipe", 4, time.Time{}, "rk", amqp.Table{"extra": "e"})
	if err != nil {
		t.Fatal(err)
	}
	if key != "other" {
		t.Errorf("routing key = %q, want the x-routing-key override", key)
	}
	if err := pub.Headers.Validate(); err != nil {
		t.Fatalf("headers rejected by amqp091: %v", err)
	}
	if pub.DeliveryMode != amqp.Persistent || pub.MessageId != "id-1" || pub.Headers[hdrDelay] != int64(5) || pub.Headers[hdrPipeline] != "pipe" {
		t.Errorf("publishing = %+v", pub)
	}
	m := amqp.Delivery{Headers: pub.Headers, Body: pub.Body, RoutingKey: "rk", MessageId: pub.MessageId}
	dec := decode(&m, "", 10, func() string { t.Fatal("id generated for a job with rr_id"); return "" })
	if dec.id != "id-1" || dec.job != `App\Job` || dec.pipeline != "pipe" || dec.priority != 3 || dec.key != "k" ||
		!dec.autoAck || dec.attempt != 4 || dec.hasCount || dec.thirdParty {
		t.Errorf("decoded = %+v", dec)
	}
	if !slices.Equal(dec.headers["x-a"], []string{"1", "2"}) || dec.headers["extra"][0] != "e" {
		t.Errorf("headers = %v", dec.headers)
	}
	for _, k := range []string{hdrID, hdrJob, hdrHeaders, hdrAttempt, hdrRoutingKey} {
		if _, ok := dec.headers[k]; ok {
			t.Errorf("bookkeeping header %s handed to the worker", k)
		}
	}
}

// TestDecodeForeign: messages from other producers (RoadRunner with other
// integer widths and a string rr_headers, third parties with tables).
func TestDecodeForeign(t *testing.T) {
	m := amqp.Delivery{
		RoutingKey: "orders",
		Headers: amqp.Table{
			hdrID:            "rr-1",
			hdrJob:           "Job",
			hdrPriority:      int32(2),
			hdrHeaders:       `{"x":["y"]}`,
			hdrDeliveryCount: int64(2),
			"x-death":        []any{amqp.Table{"count": int64(1), "queue": "q"}},
			"flag":           true,
			"when":           time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		},
	}
	dec := decode(&m, "", 10, nil)
	if dec.priority != 2 || !dec.hasCount || dec.deliveryCount != 2 || dec.attempt != 1 || dec.headers["x"][0] != "y" {
		t.Errorf("decoded = %+v", dec)
	}
	for k, want := range map[string]string{
		"x-death":        `[{"count":1,"queue":"q"}]`,
		"flag":           "true",
		"when":           "2026-01-02T03:04:05Z",
		hdrDeliveryCount: "2",
	} {
		if got := dec.headers[k]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}

	third := amqp.Delivery{RoutingKey: "orders", Headers: amqp.Table{"type": []byte("Invoice")}}
	dec = decode(&third, "type", 10, func() string { return "generated" })
	if dec.id != "generated" || !dec.thirdParty || dec.job != "Invoice" || dec.priority != 10 {
		t.Errorf("third-party with job_header: %+v", dec)
	}
	dec = decode(&amqp.Delivery{RoutingKey: "orders", MessageId: "mid"}, "type", 10, nil)
	if dec.id != "mid" || dec.job != "orders" {
		t.Errorf("third-party without job header: id %q job %q", dec.id, dec.job)
	}
}

func TestDelayQueueName(t *testing.T) {
	name, args := delayQueue(1500*time.Millisecond, "ex", "rk")
	if name != "pipevisor.delay.1500.ex.rk" || args["x-message-ttl"] != int64(1500) ||
		args["x-dead-letter-exchange"] != "ex" || args["x-dead-letter-routing-key"] != "rk" {
		t.Errorf("delay queue %q %v", name, args)
	}
	long := string(make([]byte, 300))
	if name, _ := delayQueue(time.Microsecond, "", long); len(name) > 255 || name[:18] != "pipevisor.delay.1." {
		t.Errorf("long delay queue name %q (%d bytes)", name, len(name))
	}
}

// TestEncodeFirstPublishTable: a first publish carries RoadRunner's seven
// entries and pv_msg, which says when the job is due, and no x-attempt
// (read as 1): eight entries, what fits in the smallest map amqp091-go
// decodes a table into.
func TestEncodeFirstPublishTable(t *testing.T) {
	before := time.Now()
	pub, _, err := encode(consumer.Job{ID: "a", Name: "J", Delay: 2 * time.Second}, "pipe", 1, time.Time{}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.Headers) != 8 {
		t.Errorf("table of %d entries, want 8: %v", len(pub.Headers), pub.Headers)
	}
	if _, ok := pub.Headers[hdrAttempt]; ok {
		t.Errorf("x-attempt written for attempt 1: %v", pub.Headers)
	}
	m := amqp.Delivery{Headers: pub.Headers}
	if dec := decode(&m, "", 0, func() string { return "" }); dec.attempt != 1 {
		t.Errorf("decoded attempt %d, want 1", dec.attempt)
	}
	ms, ok := dueMillis(pub.Headers)
	if want := before.Add(2 * time.Second).UnixMilli(); !ok || ms < want || ms > time.Now().Add(2*time.Second).UnixMilli() {
		t.Errorf("due %d, %v; want about %d", ms, ok, want)
	}
}
