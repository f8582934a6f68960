package sqsjobs

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// within fails unless at lies in [from, to] to the millisecond.
func within(t testing.TB, what string, at, from, to time.Time) {
	t.Helper()
	if at.Before(from.Truncate(time.Millisecond)) || at.After(to) {
		t.Errorf("%s: Enqueued = %v, want within [%v, %v]", what, at, from, to)
	}
}

// TestEnqueuedPushed: a job pushed with delay D is dated push time + D
// (when it became due), one without a delay its push time; the date is
// not among the worker's headers.
func TestEnqueuedPushed(t *testing.T) {
	t.Parallel()
	d := open(t, testConfig(uniqueName("")), "")
	before := time.Now()
	publish(t, d, consumer.Job{ID: "late", Name: "T", Delay: time.Second})
	publish(t, d, consumer.Job{ID: "now", Name: "T"})
	after := time.Now()
	for range 2 {
		dl := receive(t, d, 10*time.Second)
		switch dl.ID {
		case "now":
			within(t, "job without delay", dl.Enqueued, before, after)
		case "late":
			within(t, "job delayed 1s", dl.Enqueued, before.Add(time.Second), after.Add(time.Second))
		}
		if _, ok := dl.Headers[attrDue]; ok {
			t.Errorf("%s is among the worker's headers: %v", attrDue, dl.Headers)
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
}

// TestEnqueuedRetried: a job retried with a delay (visibility change)
// and a copy requeued with a delay are dated when they became visible
// again; one made visible again at once (Retry(0)) keeps its date.
func TestEnqueuedRetried(t *testing.T) {
	t.Parallel()
	d := open(t, testConfig(uniqueName("")), "")
	publish(t, d, consumer.Job{ID: "r", Name: "T"})
	first := receive(t, d, 10*time.Second)

	before := time.Now()
	settle(t, first, consumer.Outcome{Action: consumer.Retry, Delay: time.Second})
	after := time.Now()
	retried := receive(t, d, 10*time.Second)
	if retried.Attempt != 2 {
		t.Errorf("retried attempt %d, want 2", retried.Attempt)
	}
	within(t, "job retried after 1s", retried.Enqueued, before.Add(time.Second), after.Add(time.Second))

	settle(t, retried, consumer.Outcome{Action: consumer.Retry})
	again := receive(t, d, 10*time.Second)
	if again.Attempt != 3 || !again.Enqueued.Equal(retried.Enqueued) {
		t.Errorf("retried at once: attempt %d Enqueued %v, want 3 and the date it had, %v", again.Attempt, again.Enqueued, retried.Enqueued)
	}

	before = time.Now()
	settle(t, again, consumer.Outcome{Action: consumer.Requeue, Delay: time.Second, Headers: map[string][]string{"step": {"2"}}})
	after = time.Now()
	copied := receive(t, d, 10*time.Second)
	if copied.Attempt != 4 {
		t.Errorf("requeued copy attempt %d, want 4", copied.Attempt)
	}
	within(t, "copy requeued after 1s", copied.Enqueued, before.Add(time.Second), after.Add(time.Second))
	settle(t, copied, consumer.Outcome{Action: consumer.Ack})
}

// TestEnqueuedForeign: a message another producer sent without pv_due is
// dated by SentTimestamp on its first receive when nothing says it was
// delayed (RoadRunner's rr_delay "0" included), and not dated (zero)
// with rr_delay above zero, or when it was received before.
func TestEnqueuedForeign(t *testing.T) {
	t.Parallel()
	queue := uniqueName("")
	first := open(t, testConfig(queue), "")
	url := first.QueueURL()
	closeDriver(first) // so that the test receives a message first
	raw := rawClient(t)
	send := func(body string, attrs map[string]types.MessageAttributeValue) {
		t.Helper()
		if _, err := raw.SendMessage(testCtx(t, 5*time.Second), &sqs.SendMessageInput{
			QueueUrl: aws.String(url), MessageBody: aws.String(body), MessageAttributes: attrs,
		}); err != nil {
			t.Fatal(err)
		}
	}
	rr := func(delay string) map[string]types.MessageAttributeValue {
		// What RoadRunner's producer writes (its pack).
		return map[string]types.MessageAttributeValue{
			attrID: stringAttr("rr-" + delay), attrJob: stringAttr("App\\Job"), attrDelay: stringAttr(delay),
			attrPriority: {DataType: aws.String("Number"), StringValue: aws.String("10")}, attrAutoAck: stringAttr("false"),
		}
	}
	// "seen" is received once ahead of the driver and made visible again.
	send("seen", nil)
	ctx := testCtx(t, 5*time.Second)
	out, err := raw.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 1})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive ahead of the driver: %v, %d messages", err, len(out.Messages))
	}
	if _, err := raw.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle, VisibilityTimeout: 0,
	}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	send("plain", map[string]types.MessageAttributeValue{"tenant": stringAttr("acme")})
	send("rr no delay", rr("0"))
	send("rr delayed", rr("5"))
	after := time.Now()

	d := open(t, testConfig(queue), "")
	seen := map[string]*consumer.Delivery{}
	for range 4 {
		dl := receive(t, d, 10*time.Second)
		seen[string(dl.Body)] = dl
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	for _, body := range []string{"plain", "rr no delay"} {
		if dl := seen[body]; dl == nil || dl.Attempt != 1 {
			t.Errorf("%s: %+v, want a first attempt", body, dl)
		} else {
			within(t, body, dl.Enqueued, before, after)
		}
	}
	if dl := seen["rr delayed"]; dl == nil || !dl.Enqueued.IsZero() {
		t.Errorf("rr_delay 5: %+v, want Enqueued zero", dl)
	} else if _, ok := dl.Headers[attrDelay]; ok {
		t.Errorf("rr_delay is among the worker's headers: %v", dl.Headers)
	}
	if dl := seen["seen"]; dl == nil || dl.Attempt != 2 || !dl.Enqueued.IsZero() {
		t.Errorf("message received before: %+v, want attempt 2 and Enqueued zero", dl)
	}
}

// TestEnqueuedQueueDelay: on a queue with DelaySeconds, a job pushed
// without a delay of its own is dated push time + the queue's delay, and
// a foreign message is not dated.
func TestEnqueuedQueueDelay(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.Attributes = map[string]string{"DelaySeconds": "1"}
	d := open(t, cfg, "")
	before := time.Now()
	publish(t, d, consumer.Job{ID: "ours", Name: "T"})
	after := time.Now()
	if _, err := rawClient(t).SendMessage(testCtx(t, 5*time.Second), &sqs.SendMessageInput{
		QueueUrl: aws.String(d.QueueURL()), MessageBody: aws.String("foreign"),
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		dl := receive(t, d, 10*time.Second)
		if dl.ID == "ours" {
			within(t, "job on a 1s-delay queue", dl.Enqueued, before.Add(time.Second), after.Add(time.Second))
		} else if !dl.Enqueued.IsZero() {
			t.Errorf("foreign message on a delay queue: Enqueued = %v, want zero", dl.Enqueued)
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
}
