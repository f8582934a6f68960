package amqpjobs

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// brokerAddr is the RabbitMQ the tests use: SUPERVISOR_AMQP_URL, else the
// local default.
func brokerAddr() string {
	if a := os.Getenv("SUPERVISOR_AMQP_URL"); a != "" {
		return a
	}
	return DefaultAddr
}

// needBroker skips the test when RabbitMQ is unreachable, or fails it in
// CI (CI set), where a missing broker is a broken setup.
func needBroker(t testing.TB) {
	t.Helper()
	c, brokerErr := amqp.DialConfig(brokerAddr(), amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if brokerErr == nil {
		_ = c.Close()
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("RabbitMQ at %s unreachable: %v", redact(brokerAddr()), brokerErr)
	}
	t.Skipf("RabbitMQ at %s unreachable: %v (set CI to make this fail)", redact(brokerAddr()), brokerErr)
}

// uniqueName returns a queue name unique to this test run.
func uniqueName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("pv-test.")
	for _, r := range t.Name() {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('.')
		}
	}
	b.WriteByte('.')
	b.WriteString(strings.ToLower(rand.Text()[:8]))
	return b.String()
}

// admin runs fn on a fresh connection and channel of its own (tests that
// close every broker connection must not break the helpers).
func admin(t testing.TB, fn func(ch *amqp.Channel) error) error {
	t.Helper()
	conn, err := amqp.DialConfig(brokerAddr(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return fn(ch)
}

// deleteQueues deletes the queues at the end of the test.
func deleteQueues(t testing.TB, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		_ = admin(t, func(ch *amqp.Channel) error {
			for _, n := range names {
				if _, err := ch.QueueDelete(n, false, false, false); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// declareQueue declares a plain, non-durable queue or fails (delete it
// with deleteQueues).
func declareQueue(t testing.TB, name string) {
	t.Helper()
	if err := admin(t, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, false, false, false, false, nil)
		return err
	}); err != nil {
		t.Fatalf("declare %s: %v", name, err)
	}
}

// queueCount returns the ready messages of queue.
func queueCount(t testing.TB, queue string) int {
	t.Helper()
	var n int
	err := admin(t, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		n = q.Messages
		return err
	})
	if err != nil {
		t.Fatalf("count %s: %v", queue, err)
	}
	return n
}

// peekAll returns every message of queue without removing it (basic.get
// without ack; closing the channel puts them back).
func peekAll(t testing.TB, queue string) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	err := admin(t, func(ch *amqp.Channel) error {
		for {
			m, ok, err := ch.Get(queue, false)
			if err != nil || !ok {
				return err
			}
			out = append(out, m)
		}
	})
	if err != nil {
		t.Fatalf("peek %s: %v", queue, err)
	}
	return out
}

// testConfig is a consuming pipeline on a fresh queue, deleted (with its
// delay queues for the given delays) when the test ends.
func testConfig(t testing.TB, delays ...time.Duration) Config {
	t.Helper()
	q := uniqueName(t)
	names := []string{q}
	for _, d := range delays {
		n, _ := delayQueue(d, "", q)
		p, _ := delayQueue(d, DefaultExchange, q)
		names = append(names, n, p)
	}
	deleteQueues(t, names...)
	return Config{Queue: q, Prefetch: 10}
}

// open returns a driver for cfg, closed when the test ends.
func open(t testing.TB, cfg Config, deadLetter string) *Driver {
	t.Helper()
	needBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := New(ctx, "test", Global{Addr: brokerAddr()}, cfg, deadLetter, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// recv receives one delivery within 10s or fails.
func recv(t testing.TB, d *Driver) *consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	del, err := d.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return del
}

// settle settles del with o or fails.
func settle(t testing.TB, del *consumer.Delivery, o consumer.Outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := del.Settle(ctx, o); err != nil {
		t.Fatalf("Settle(%s) of %q: %v", o.Action, del.ID, err)
	}
}

// publish publishes jobs or fails.
func publish(t testing.TB, d *Driver, jobs ...consumer.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Publish(ctx, jobs); err != nil {
		t.Fatalf("Publish(%d jobs): %v", len(jobs), err)
	}
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isNotFound reports an AMQP 404 (queue or exchange missing).
func isNotFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}
