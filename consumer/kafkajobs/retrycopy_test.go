package kafkajobs

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pipevisor/pipevisor/consumer"
)

// openRetryTopic starts a driver consuming orders and orders-retry, with
// orders-retry as its retry_topic, publishes x (key a) and y (key b) and
// has the broker hold the first produce to orders-retry with code.
func openRetryTopic(t *testing.T, code int16) (*kfake.Cluster, *Driver, *dlqHold) {
	t.Helper()
	c := newCluster(t, 1, "orders", "orders-retry")
	cfg := testConfig("orders")
	cfg.ConsumerOptions.Topics = []string{"orders", "orders-retry"}
	cfg.RetryTopic = "orders-retry"
	d := open(t, c, cfg, "")
	publish(t, d, consumer.Job{ID: "x", Key: "a", Headers: map[string][]string{"h": {"1"}}}, consumer.Job{ID: "y", Key: "b"})
	return c, d, holdProducesTo(t, c, "orders-retry", code)
}

// settleRetryUnanswered settles x Retry with a short context while the
// broker holds the retry-topic produce: Settle ends in bounded time with
// an error, and for several in-place retry periods nothing is handed out
// (neither x again in place nor y past it), no second copy is produced
// and the commit point stays before x.
func settleRetryUnanswered(t *testing.T, c *kfake.Cluster, d *Driver, h *dlqHold) {
	t.Helper()
	x := receive(t, d)
	if x.ID != "x" || PositionOf(x).Topic != "orders" {
		t.Fatalf("first delivery %s of %s, want x of orders", x.ID, PositionOf(x).Topic)
	}
	start := time.Now()
	err := x.Settle(testCtx(t, 300*time.Millisecond), consumer.Outcome{
		Action: consumer.Retry, Headers: map[string][]string{"h": {"2"}},
	})
	if err == nil {
		t.Fatal("Settle(Retry) succeeded while the broker holds the retry-topic produce")
	}
	if took := time.Since(start); took > onWireGrace+3*time.Second {
		t.Fatalf("Settle(Retry) took %s", took)
	}
	select {
	case <-h.arrived:
	default:
		t.Fatal("the retry-topic produce never reached the broker")
	}
	// Several in-place retry periods: x would run again in place now
	// without the fix.
	receiveNone(t, d, 3*copyRetryDelay)
	if n := h.attempts.Load(); n != 1 {
		t.Fatalf("%d retry-topic produce requests while the first is unanswered, want 1", n)
	}
	if got := committed(t, rawClient(t, c), testGroup, "orders", 0); got > 0 {
		t.Fatalf("committed offset %d passes x at offset 0 while its copy is unanswered", got)
	}
}

// TestRetryCopyUnansweredIsNotRetriedInPlace: the broker answers the
// retry-topic produce only long after the settle context ended.
// Meanwhile x is not run again in place (its copy may still land), the
// partition waits and the commit point stays before x; once the broker
// takes the copy, x runs exactly once more, from the retry topic, and
// orders is committed past it.
func TestRetryCopyUnansweredIsNotRetriedInPlace(t *testing.T) {
	c, d, h := openRetryTopic(t, 0)
	settleRetryUnanswered(t, c, d, h)

	h.answer()
	cl := rawClient(t, c)
	waitCommitted(t, cl, "orders", 0, 1)
	runs := map[string]int{}
	for range 2 {
		dl := receive(t, d)
		runs[dl.ID+"@"+PositionOf(dl).Topic]++
		if dl.ID == "x" && (dl.Attempt != 2 || !reflect.DeepEqual(dl.Headers, map[string][]string{"h": {"2"}})) {
			t.Fatalf("x from %s: attempt %d headers %v, want 2, h=[2]", PositionOf(dl).Topic, dl.Attempt, dl.Headers)
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	if want := map[string]int{"x@orders-retry": 1, "y@orders": 1}; !reflect.DeepEqual(runs, want) {
		t.Fatalf("runs after the copy landed: %v, want %v", runs, want)
	}
	waitCommitted(t, cl, "orders", 0, 2)
	receiveNone(t, d, 2*copyRetryDelay) // room for x to show up again
	if n := countJob(t, c, "orders-retry", "x"); n != 1 {
		t.Fatalf("retry topic holds %d copies of x, want exactly 1", n)
	}
}

// TestRetryCopyUnansweredThenFailedRetriesInPlace: the broker holds the
// retry-topic produce past the settle context and then refuses it. Only
// then is x retried in place, as for a copy that failed in time: once,
// as attempt 2 with the headers the worker asked for, and no copy is in
// the retry topic.
func TestRetryCopyUnansweredThenFailedRetriesInPlace(t *testing.T) {
	c, d, h := openRetryTopic(t, kerr.InvalidRecord.Code)
	settleRetryUnanswered(t, c, d, h)

	h.answer() // refused: x is retried in place
	again := receive(t, d)
	if again.ID != "x" || PositionOf(again).Topic != "orders" || PositionOf(again).Offset != 0 || again.Attempt != 2 ||
		!reflect.DeepEqual(again.Headers, map[string][]string{"h": {"2"}}) {
		t.Fatalf("after the refused copy got %s of %s offset %d attempt %d headers %v; want x of orders, 0, 2, h=[2]",
			again.ID, PositionOf(again).Topic, PositionOf(again).Offset, again.Attempt, again.Headers)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
	y := receive(t, d)
	if y.ID != "y" {
		t.Fatalf("got %s of %s after x, want y", y.ID, PositionOf(y).Topic)
	}
	settle(t, y, consumer.Outcome{Action: consumer.Ack})
	waitCommitted(t, rawClient(t, c), "orders", 0, 2)
	receiveNone(t, d, copyRetryDelay)
	if n := countJob(t, c, "orders-retry", "x"); n != 0 {
		t.Fatalf("retry topic holds %d copies of x after the broker refused it, want 0", n)
	}
}
