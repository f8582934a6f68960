package sqsjobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestRequeueSameHeadersKeepsMessage: a Requeue that changes no header is
// a visibility change on the original message, not a copy.
func TestRequeueSameHeadersKeepsMessage(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	d := openWith(t, func(a api) api { rec.api = a; return rec }, testConfig(uniqueName("")), "")
	publish(t, d, consumer.Job{ID: "rq", Name: "n", Headers: map[string][]string{"x": {"1"}}})
	first := receive(t, d, 10*time.Second)
	settle(t, first, consumer.Outcome{Action: consumer.Requeue, Headers: map[string][]string{"x": {"1"}}})
	second := receive(t, d, 10*time.Second)
	if second.ID != "rq" || second.Attempt != 2 {
		t.Fatalf("after Requeue: %s attempt %d", second.ID, second.Attempt)
	}
	if r := rec.receipts("rq"); len(r) != 2 || r[0].messageID != r[1].messageID || r[1].count != 2 {
		t.Errorf("receipts %+v, want the same message received twice", r)
	}
	settle(t, second, consumer.Outcome{Action: consumer.Ack})
}

// TestErrorVisibilityTimeout: a Retry without delay waits for
// error_visibility_timeout when it is set.
func TestErrorVisibilityTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.ErrorVisibilityTimeout = 2 * time.Second
	d := open(t, cfg, "")
	publish(t, d, consumer.Job{ID: "ev", Name: "n"})
	first := receive(t, d, 10*time.Second)
	start := time.Now()
	settle(t, first, consumer.Outcome{Action: consumer.Retry})
	second := receive(t, d, 10*time.Second)
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("Retry(0) with error_visibility_timeout 2s redelivered after %v", el)
	}
	settle(t, second, consumer.Outcome{Action: consumer.Ack})
}

// TestDeadWithoutTarget: with neither dead_letter nor a redrive policy,
// Dead deletes the message.
func TestDeadWithoutTarget(t *testing.T) {
	t.Parallel()
	d := open(t, testConfig(uniqueName("")), "")
	publish(t, d, consumer.Job{ID: "gone", Name: "n"})
	settle(t, receive(t, d, 10*time.Second), consumer.Outcome{Action: consumer.Dead, Reason: "bad"})
	raw := rawClient(t)
	if v, nv, dl := queueCounts(t, raw, d.QueueURL()); v+nv+dl != 0 {
		t.Errorf("queue holds %d visible, %d in flight, %d delayed after Dead", v, nv, dl)
	}
}

// TestQueueDeclaration: the queue is created with the configured
// attributes (keys in any spelling) and tags; skip_queue_declaration
// then finds it as it is.
func TestQueueDeclaration(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.Attributes = map[string]string{"message_retention_period": "3600", "DelaySeconds": "0"}
	cfg.Tags = map[string]string{"team": "payments"}
	d := open(t, cfg, "")
	raw := rawClient(t)
	ctx := testCtx(t, 5*time.Second)
	attrs, err := raw.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(d.QueueURL()), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameMessageRetentionPeriod},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := attrs.Attributes["MessageRetentionPeriod"]; got != "3600" {
		t.Errorf("MessageRetentionPeriod = %q, want 3600", got)
	}
	tags, err := raw.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(d.QueueURL())})
	if err != nil {
		t.Fatal(err)
	}
	if tags.Tags["team"] != "payments" {
		t.Errorf("tags %v, want team: payments", tags.Tags)
	}
	skip := cfg
	skip.SkipQueueDeclaration = true
	skip.Attributes = nil
	again := open(t, skip, "")
	if again.QueueURL() != d.QueueURL() {
		t.Errorf("skip_queue_declaration found %s, want %s", again.QueueURL(), d.QueueURL())
	}
	byURL := testConfig(d.QueueURL())
	viaURL := open(t, byURL, "")
	publish(t, viaURL, consumer.Job{ID: "u", Name: "n"})
	dl := receive(t, d, 10*time.Second)
	if dl.ID != "u" || dl.Queue != cfg.Queue {
		t.Errorf("job published through the queue URL: %s on %s", dl.ID, dl.Queue)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
}

// TestCloseWithUnsettled: Close gives up when its ctx ends with a delivery
// still unsettled, says so, and that delivery can no longer be settled
// (SQS makes it visible again after its visibility timeout).
func TestCloseWithUnsettled(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.VisibilityTimeout = 2 * time.Second
	d := open(t, cfg, "")
	publish(t, d, consumer.Job{ID: "held", Name: "n"})
	dl := receive(t, d, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a delivery unsettled = %v, want DeadlineExceeded", err)
	}
	if err := dl.Settle(testCtx(t, time.Second), consumer.Outcome{Action: consumer.Ack}); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Settle after Close = %v, want ErrClosed", err)
	}
	again := open(t, cfg, "")
	back := receive(t, again, 10*time.Second)
	if back.ID != "held" {
		t.Fatalf("got %q after the visibility timeout, want held", back.ID)
	}
	settle(t, back, consumer.Outcome{Action: consumer.Ack})
}
