package memjobs_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// killJobs publishes one job per reason and settles each as dead with it.
func killJobs(t *testing.T, q *memjobs.Queue, reasons map[string]string) {
	t.Helper()
	for _, id := range slices.Sorted(maps.Keys(reasons)) {
		publish(t, q, consumer.Job{ID: id, Name: "Job" + id, Payload: []byte("p-" + id),
			Headers: map[string][]string{"tenant": {"t-" + id}}, Key: "k-" + id})
		d := receive(t, q)
		settle(t, d, consumer.Outcome{Action: consumer.Dead, Reason: reasons[id]})
	}
}

func TestListRetryRemoveDead(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, memjobs.Config{})
	killJobs(t, q, map[string]string{"a": "nacked: bad input", "b": "worker crashed: exit 255 | PHP Fatal error", "c": "exec_ttl"})

	dead, err := q.ListDead(ctx, 0)
	if err != nil || len(dead) != 3 {
		t.Fatalf("ListDead = %d jobs, %v; want 3", len(dead), err)
	}
	b := dead[1]
	if b.Job.ID != "b" || b.Job.Name != "Jobb" || string(b.Job.Payload) != "p-b" || b.Job.Pipeline != "q" ||
		b.Job.Headers["tenant"][0] != "t-b" || b.Job.Key != "k-b" || b.Attempts != 1 || b.At.IsZero() ||
		!strings.Contains(b.Reason, "PHP Fatal error") {
		t.Errorf("dead job b = %+v", b)
	}
	if lim, _ := q.ListDead(ctx, 2); len(lim) != 2 || lim[0].Job.ID != "a" {
		t.Errorf("ListDead limit 2 = %v", lim)
	}

	ids, err := q.RetryDead(ctx, consumer.DeadSelection{IDs: []string{"b", "nope"}})
	if err != nil || !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("RetryDead(b, nope) = %v, %v", ids, err)
	}
	d := receive(t, q)
	if d.ID != "b" || d.Attempt != 1 || string(d.Body) != "p-b" || d.Headers["tenant"][0] != "t-b" || d.Key != "k-b" {
		t.Errorf("retried delivery = id %s attempt %d body %q headers %v key %q", d.ID, d.Attempt, d.Body, d.Headers, d.Key)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
	if left, _ := q.ListDead(ctx, 0); len(left) != 2 || left[0].Job.ID != "a" || left[1].Job.ID != "c" {
		t.Errorf("dead list after retry = %v", left)
	}

	ids, err = q.RemoveDead(ctx, consumer.DeadSelection{IDs: []string{"c"}})
	if err != nil || !slices.Equal(ids, []string{"c"}) {
		t.Fatalf("RemoveDead(c) = %v, %v", ids, err)
	}
	ids, err = q.RemoveDead(ctx, consumer.DeadSelection{All: true})
	if err != nil || !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("RemoveDead(all) = %v, %v", ids, err)
	}
	if left, _ := q.ListDead(ctx, 0); len(left) != 0 {
		t.Errorf("dead list after remove all = %v", left)
	}
}

func TestRetryDeadOnClosedQueueKeepsThem(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, memjobs.Config{})
	killJobs(t, q, map[string]string{"a": "x"})
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := q.RetryDead(ctx, consumer.DeadSelection{All: true})
	if !errors.Is(err, consumer.ErrClosed) || len(ids) != 0 {
		t.Fatalf("RetryDead on a closed queue = %v, %v; want ErrClosed", ids, err)
	}
	if left, _ := q.ListDead(ctx, 0); len(left) != 1 {
		t.Errorf("dead list after a failed retry = %v, want the job kept", left)
	}
}
