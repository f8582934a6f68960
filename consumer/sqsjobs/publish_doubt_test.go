package sqsjobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// lostReply sends every SendMessageBatch call to SQS and then reports a
// network error, as when the connection drops before the answer arrives.
type lostReply struct{ api }

func (l lostReply) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	if _, err := l.api.SendMessageBatch(ctx, in, opts...); err != nil {
		return nil, err
	}
	return nil, errors.New("read tcp 127.0.0.1:4566: connection reset by peer")
}

// refused refuses every SendMessageBatch call as a whole, the way SQS
// answers a request for a queue that does not exist; nothing is sent.
type refused struct{ api }

func (refused) SendMessageBatch(context.Context, *sqs.SendMessageBatchInput, ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue", Message: "no such queue", Fault: smithy.FaultClient}
}

func jobsNamed(prefix string, n int) []consumer.Job {
	jobs := make([]consumer.Job, n)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("%s-%d", prefix, i), Name: "App\\Job", Payload: []byte("x")}
	}
	return jobs
}

// TestPublishLostReplyInDoubt: a batch call whose answer was lost leaves
// its 10 jobs in doubt (and they are in the queue); the 5 jobs of the next
// batch, never sent, are failed and not in the queue.
func TestPublishLostReplyInDoubt(t *testing.T) {
	t.Parallel()
	d := openWith(t, func(a api) api { return lostReply{a} }, testConfig(uniqueName("")), "")
	jobs := jobsNamed("lost", 15)
	err := d.Publish(testCtx(t, 10*time.Second), jobs)
	rep := consumer.ReportOf(len(jobs), err)
	if len(rep.InDoubt) != 10 || !slices.Equal(rep.InDoubt, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) || len(rep.Failed) != 5 || len(rep.Confirmed) != 0 {
		t.Fatalf("Publish with the reply lost = %v: report %+v, want 0-9 in doubt, 10-14 failed", err, rep)
	}
	var got []string
	for range 10 {
		dl := receive(t, d, 10*time.Second)
		got = append(got, dl.ID)
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	slices.Sort(got)
	want := make([]string, 10)
	for i := range want {
		want[i] = jobs[i].ID
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("queue held %v, want the in-doubt jobs %v", got, want)
	}
	receiveNone(t, d, time.Second)
}

// TestPublishRefusedCallFails: a batch call SQS refuses as a whole (a
// client fault) fails its jobs: they are certainly not in the queue.
func TestPublishRefusedCallFails(t *testing.T) {
	t.Parallel()
	d := openWith(t, func(a api) api { return refused{a} }, testConfig(uniqueName("")), "")
	jobs := jobsNamed("refused", 3)
	err := d.Publish(testCtx(t, 10*time.Second), jobs)
	if rep := consumer.ReportOf(len(jobs), err); len(rep.Failed) != 3 {
		t.Fatalf("Publish refused by SQS = %v: report %+v, want all 3 failed", err, rep)
	}
	if errors.Is(err, consumer.ErrInDoubt) {
		t.Errorf("a refused call is reported in doubt: %v", err)
	}
}
