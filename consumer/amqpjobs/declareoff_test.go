package amqpjobs

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// declareOffTopology declares, as an operator would, a durable direct
// exchange and a durable queue bound to it with key, and removes both when
// the test ends.
func declareOffTopology(t *testing.T, exchange, queue, key string) {
	t.Helper()
	needBroker(t)
	if err := admin(t, func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(exchange, ExchangeDirect, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
		return ch.QueueBind(queue, key, exchange, false, nil)
	}); err != nil {
		t.Fatalf("operator topology: %v", err)
	}
	t.Cleanup(func() {
		_ = admin(t, func(ch *amqp.Channel) error {
			_, _ = ch.QueueDelete(queue, false, false, false)
			return ch.ExchangeDelete(exchange, false, false)
		})
	})
}

// TestDeclareOffUsesExistingTopology: with exchange_declare and
// queue_declare false (RoadRunner v2's exchange.declare / queue.declare),
// the driver runs on an exchange and queue declared by someone else with
// other flags than its config's (declaring them would fail with
// PRECONDITION_FAILED): it publishes through the exchange and consumes
// the queue.
func TestDeclareOffUsesExistingTopology(t *testing.T) {
	name := uniqueName(t)
	exchange, queue, key := name+".x", name+".q", "rk"
	declareOffTopology(t, exchange, queue, key)

	no := false
	cfg := Config{Version: 2, Exchange: exchange, Queue: queue, RoutingKey: key, ExchangeDeclare: &no, QueueDeclare: &no}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := open(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Publish(ctx, []consumer.Job{{ID: "j1", Name: "job", Payload: []byte("x")}}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	del := recv(t, d)
	if del.ID != "j1" {
		t.Fatalf("received %q, want j1", del.ID)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})

	// The same config with declaring on fails: the queue exists with
	// other flags. This is what declare: false avoids.
	yes := true
	cfg.ExchangeDeclare, cfg.QueueDeclare = nil, &yes
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	if d2, err := New(dctx, "test", Global{Addr: brokerAddr()}, cfg, "", nil); err == nil {
		_ = d2.Close(dctx)
		t.Fatal("New with queue_declare true on a queue of other flags succeeded")
	}
}

// TestQueueDeclareOffNoBinding: with queue_declare false the driver
// neither declares the queue nor binds it; the exchange (exchange_declare
// unset) is still declared.
func TestQueueDeclareOffNoBinding(t *testing.T) {
	name := uniqueName(t)
	exchange, queue := name+".x", name+".q"
	declareQueue(t, queue) // exists, bound to nothing
	deleteQueues(t, queue)
	t.Cleanup(func() {
		_ = admin(t, func(ch *amqp.Channel) error { return ch.ExchangeDelete(exchange, false, false) })
	})

	no := false
	cfg := Config{Exchange: exchange, Queue: queue, RoutingKey: "rk", QueueDeclare: &no}
	cfg.Defaults()
	d := open(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The exchange was declared: a passive declare finds it.
	if err := admin(t, func(ch *amqp.Channel) error {
		return ch.ExchangeDeclarePassive(exchange, ExchangeDirect, false, false, false, false, nil)
	}); err != nil {
		t.Fatalf("exchange not declared: %v", err)
	}
	// The queue was not bound: a job published through the exchange is
	// confirmed (unroutable) but never reaches the queue.
	if err := d.Publish(ctx, []consumer.Job{{ID: "j1", Name: "job", Payload: []byte("x")}}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if n := queueCount(t, queue); n != 0 {
		t.Fatalf("queue holds %d messages: it was bound", n)
	}
}
