package sqsjobs

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/pipevisor/pipevisor/consumer"
)

// flakyDeletes fails DeleteMessage calls on one queue while fail is set:
// the broker is unreachable between a retry's copy and its removal.
type flakyDeletes struct {
	api
	url  atomic.Value // string
	fail atomic.Bool
}

var errOutage = errors.New("connection reset by peer")

func (f *flakyDeletes) DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	if f.fail.Load() && aws.ToString(in.QueueUrl) == f.url.Load() {
		return nil, errOutage
	}
	return f.api.DeleteMessage(ctx, in, opts...)
}

func deadIDs(dead []consumer.DeadJob) []string {
	out := make([]string, len(dead))
	for i, d := range dead {
		out[i] = d.Job.ID
	}
	return out
}

func listDead(t *testing.T, d *Driver) []consumer.DeadJob {
	t.Helper()
	dead, err := d.ListDead(testCtx(t, 30*time.Second), 0)
	if err != nil {
		t.Fatalf("ListDead: %v", err)
	}
	return dead
}

// The DLQ is listed without deleting anything; a retry whose delete of
// the original fails (an outage) still counts, and the message is deleted
// by the next scan instead of being shown again; the retried job runs as
// attempt 1 with its headers; remove empties the DLQ.
func TestDeadStore(t *testing.T) {
	t.Parallel()
	f := &flakyDeletes{}
	dlq := uniqueName("")
	d := openWith(t, func(a api) api { f.api = a; return f }, testConfig(uniqueName("")), dlq)
	f.url.Store(d.deadURL)
	d.dlq.visibility = time.Second // a failed delete shows up again soon
	for _, id := range []string{"a", "b", "c"} {
		publish(t, d, consumer.Job{ID: id, Name: "Job" + id, Payload: []byte("p-" + id),
			Headers: map[string][]string{"tenant": {"t-" + id}}})
		settle(t, receive(t, d, 10*time.Second), consumer.Outcome{Action: consumer.Dead, Reason: "reason " + id})
	}
	dead := listDead(t, d)
	if !slices.Equal(deadIDs(dead), []string{"a", "b", "c"}) {
		t.Fatalf("ListDead = %v, want a b c", deadIDs(dead))
	}
	b := dead[1]
	if b.Job.Name != "Jobb" || string(b.Job.Payload) != "p-b" || !slices.Equal(b.Job.Headers["tenant"], []string{"t-b"}) ||
		b.Reason != "reason b" || b.Attempts != 1 || time.Since(b.At) > time.Minute || b.Job.Pipeline != "orders" {
		t.Errorf("dead job b = %+v", b)
	}
	if again := listDead(t, d); !slices.Equal(deadIDs(again), []string{"a", "b", "c"}) {
		t.Fatalf("second ListDead = %v: listing lost something", deadIDs(again))
	}

	f.fail.Store(true)
	ids, err := d.RetryDead(testCtx(t, 30*time.Second), consumer.DeadSelection{IDs: []string{"b", "zz"}})
	f.fail.Store(false)
	if err != nil || !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("RetryDead(b) during the outage = %v, %v; want b", ids, err)
	}
	del := receive(t, d, 10*time.Second)
	if del.ID != "b" || del.Attempt != 1 || string(del.Body) != "p-b" || !slices.Equal(del.Headers["tenant"], []string{"t-b"}) {
		t.Errorf("retried delivery = %s attempt %d body %q headers %v", del.ID, del.Attempt, del.Body, del.Headers)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
	// The undeleted copy of b is visible again after 1s: the scan deletes
	// it rather than show b twice (in the DLQ and done).
	raw := rawClient(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := listDead(t, d)
		if !slices.Equal(deadIDs(left), []string{"a", "c"}) {
			t.Fatalf("after the retry ListDead = %v, want a c", deadIDs(left))
		}
		if v, nv, _ := queueCounts(t, raw, d.deadURL); v+nv == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the retried message was never deleted from the DLQ")
		}
		time.Sleep(200 * time.Millisecond)
	}

	ids, err = d.RemoveDead(testCtx(t, 30*time.Second), consumer.DeadSelection{All: true})
	if err != nil || !slices.Equal(ids, []string{"a", "c"}) {
		t.Fatalf("RemoveDead(all) = %v, %v", ids, err)
	}
	if v, nv, _ := queueCounts(t, raw, d.deadURL); v+nv != 0 {
		t.Errorf("after remove the DLQ holds %d visible, %d hidden", v, nv)
	}
}

// A pipeline without a dead_letter queue keeps no failed jobs.
func TestDeadStoreNone(t *testing.T) {
	t.Parallel()
	d := open(t, testConfig(uniqueName("")), "")
	if _, err := d.ListDead(context.Background(), 0); !errors.Is(err, consumer.ErrNoDeadStore) {
		t.Errorf("ListDead = %v, want ErrNoDeadStore", err)
	}
}
