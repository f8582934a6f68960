package sqsjobs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/pipevisor/pipevisor/consumer"
)

// failingDeletes fails the first n DeleteMessage calls.
type failingDeletes struct {
	api
	left *atomic.Int32
}

func (f failingDeletes) DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	if f.left.Add(-1) >= 0 {
		return nil, errors.New("injected delete failure")
	}
	return f.api.DeleteMessage(ctx, in, opts...)
}

// TestAutoAckDeleteFailureDoesNotRunTwice: an auto-ack job whose delete on
// receipt fails is not handed out then; it runs once, when the message
// comes back and its delete works.
func TestAutoAckDeleteFailureDoesNotRunTwice(t *testing.T) {
	t.Parallel()
	left := &atomic.Int32{}
	left.Store(1)
	cfg := testConfig(uniqueName(""))
	cfg.VisibilityTimeout = time.Second
	d := openWith(t, func(a api) api { return failingDeletes{a, left} }, cfg, "")
	if err := d.Publish(testCtx(t, 10*time.Second), []consumer.Job{{ID: "auto", Name: "App\\Job", Payload: []byte("x"), AutoAck: true}}); err != nil {
		t.Fatal(err)
	}
	dl := receive(t, d, 15*time.Second)
	if dl.ID != "auto" || left.Load() >= 0 {
		t.Fatalf("got %q with %d delete failures left, want job auto after the failed delete", dl.ID, left.Load())
	}
	receiveNone(t, d, 3*time.Second) // deleted on its second receipt: it never comes back
}
