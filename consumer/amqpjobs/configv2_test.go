package amqpjobs

import (
	"testing"
	"time"
)

// TestConfigV2Flat: every key of a version 2 config lands on the flat
// field of the same meaning.
func TestConfigV2Flat(t *testing.T) {
	no, yes := false, true
	v := ConfigV2{
		Version: 2, Prefetch: 5, Priority: 3, RedialTimeout: time.Second,
		Exchange: ExchangeV2{Name: "ex", Type: ExchangeTopic, Durable: true, AutoDelete: true, Declare: &no},
		Queue: QueueV2{Name: "q", RoutingKey: "rk", Durable: true, AutoDelete: true, Exclusive: true,
			DeleteOnStop: true, MultipleAck: true, RequeueOnFail: true, ConsumerID: "c1",
			Headers: map[string]any{"x-max-priority": 10}, Declare: &yes},
		JobHeader: "x-job", ConfirmTimeout: 2 * time.Second,
	}
	c := v.Flat()
	if c.Version != 2 || c.Prefetch != 5 || c.Priority != 3 || c.RedialTimeout != time.Second ||
		c.Exchange != "ex" || c.ExchangeType != ExchangeTopic || !c.ExchangeDurable || !c.ExchangeAutoDelete ||
		c.Queue != "q" || c.RoutingKey != "rk" || !c.Durable || !c.QueueAutoDelete || !c.Exclusive ||
		!c.DeleteQueueOnStop || !c.MultipleAck || !c.RequeueOnFail || c.ConsumerID != "c1" ||
		c.QueueHeaders["x-max-priority"] != 10 || c.JobHeader != "x-job" || c.ConfirmTimeout != 2*time.Second {
		t.Fatalf("Flat = %+v", c)
	}
	if c.DeclaresExchange() || !c.DeclaresQueue() {
		t.Errorf("declare flags: exchange %v queue %v, want false true", c.DeclaresExchange(), c.DeclaresQueue())
	}
}

// TestDeclareFlags: exchange_declare / queue_declare override declare
// each for their own entity; unset they follow declare.
func TestDeclareFlags(t *testing.T) {
	no, yes := false, true
	for _, tc := range []struct {
		declare, ex, q *bool
		wantEx, wantQ  bool
	}{
		{nil, nil, nil, true, true},
		{&no, nil, nil, false, false},
		{&no, &yes, nil, true, false},
		{nil, nil, &no, true, false},
		{nil, &no, nil, false, true},
	} {
		c := Config{Declare: tc.declare, ExchangeDeclare: tc.ex, QueueDeclare: tc.q}
		if c.DeclaresExchange() != tc.wantEx || c.DeclaresQueue() != tc.wantQ {
			t.Errorf("%+v: exchange %v queue %v, want %v %v", tc, c.DeclaresExchange(), c.DeclaresQueue(), tc.wantEx, tc.wantQ)
		}
	}
}

// TestClamp: prefetch out of range is brought into range with a warning,
// as RoadRunner accepts it; in range nothing changes.
func TestClamp(t *testing.T) {
	for _, tc := range []struct{ in, want, warnings int }{
		{1_000_000, MaxPrefetch, 1},
		{-1, DefaultPrefetch, 1},
		{100, 100, 0},
	} {
		c := Config{Prefetch: tc.in}
		w := c.Clamp()
		if c.Prefetch != tc.want || len(w) != tc.warnings {
			t.Errorf("Clamp(%d) = %d with %v, want %d with %d warning(s)", tc.in, c.Prefetch, w, tc.want, tc.warnings)
		}
		if len(w) == 1 && w[0].Key != "prefetch" {
			t.Errorf("warning key %q", w[0].Key)
		}
	}
}

// TestV2Key: flat keys map to their version 2 place.
func TestV2Key(t *testing.T) {
	for in, want := range map[string]string{
		"routing_key":                  "queue.routing_key",
		"queue":                        "queue.name",
		"exchange_type":                "exchange.type",
		"queue_headers.x-max-priority": "queue.headers.x-max-priority",
		"delete_queue_on_stop":         "queue.delete_on_stop",
	} {
		if got, flat := V2Key(in); got != want || !flat {
			t.Errorf("V2Key(%q) = %q, %v; want %q, true", in, got, flat, want)
		}
	}
	if got, flat := V2Key("prefetch"); got != "prefetch" || flat {
		t.Errorf("V2Key(prefetch) = %q, %v", got, flat)
	}
}

// TestClampPriority: a negative priority becomes the default, as
// RoadRunner reads priority <= 0.
func TestClampPriority(t *testing.T) {
	c := Config{Priority: -3, Prefetch: 1}
	w := c.Clamp()
	if c.Priority != DefaultPriority || len(w) != 1 || w[0].Key != "priority" {
		t.Errorf("Clamp of priority -3 = %d, %v", c.Priority, w)
	}
}
