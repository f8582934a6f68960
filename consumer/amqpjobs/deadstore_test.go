package amqpjobs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

func deadIDs(dead []consumer.DeadJob) []string {
	out := make([]string, len(dead))
	for i, d := range dead {
		out[i] = d.Job.ID
	}
	return out
}

func listDead(t *testing.T, d *Driver, limit int) []consumer.DeadJob {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead, err := d.ListDead(ctx, limit)
	if err != nil {
		t.Fatalf("ListDead: %v", err)
	}
	return dead
}

// The dead_letter queue is listed without losing or reordering anything,
// by concurrent readers too; a retry cut off by a lost connection between
// the confirmed copy and the ack of the original leaves the job once on
// the work queue (attempt 1, its headers) and gone from the dead letters;
// remove empties the queue.
func TestDeadStore(t *testing.T) {
	ctx := context.Background()
	addr := testVhost(t)
	vhost := strings.TrimPrefix(mustURL(t, addr).Path, "/")
	cfg := Config{Queue: uniqueName(t), Prefetch: 10, RedialTimeout: 5 * time.Second}
	dlq := uniqueName(t)
	nctx, ncancel := context.WithTimeout(ctx, 10*time.Second)
	defer ncancel()
	d, err := New(nctx, "test", Global{Addr: addr}, cfg, dlq, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = d.Close(cctx)
	})
	count := func(queue string) int {
		t.Helper()
		s, err := d.waitSession(nctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.queueDepth(queue)
		if err != nil {
			t.Fatalf("depth of %s: %v", queue, err)
		}
		return n
	}
	for _, id := range []string{"a", "b", "c"} {
		publish(t, d, consumer.Job{ID: id, Name: "Job" + id, Payload: []byte("p-" + id),
			Headers: map[string][]string{"tenant": {"t-" + id}}})
		del := recv(t, d)
		settle(t, del, consumer.Outcome{Action: consumer.Dead, Reason: "reason " + id})
	}

	dead := listDead(t, d, 0)
	if !slices.Equal(deadIDs(dead), []string{"a", "b", "c"}) {
		t.Fatalf("ListDead = %v, want a b c", deadIDs(dead))
	}
	b := dead[1]
	if b.Job.Name != "Jobb" || string(b.Job.Payload) != "p-b" || !slices.Equal(b.Job.Headers["tenant"], []string{"t-b"}) ||
		b.Reason != "reason b" || b.Attempts != 1 || time.Since(b.At) > time.Minute || b.Job.Pipeline != "test" {
		t.Errorf("dead job b = %+v", b)
	}
	for k := range b.Job.Headers {
		if deadHeader(k) || internal(k) {
			t.Errorf("dead job headers carry bookkeeping %q: %v", k, b.Job.Headers)
		}
	}
	if n := count(dlq); n != 3 {
		t.Fatalf("after listing the dead_letter queue holds %d messages, want 3", n)
	}
	if two := listDead(t, d, 2); !slices.Equal(deadIDs(two), []string{"a", "b"}) {
		t.Errorf("ListDead(2) = %v", deadIDs(two))
	}
	var wg sync.WaitGroup
	lists := make([][]string, 3)
	for i := range lists {
		wg.Go(func() { lists[i] = deadIDs(listDead(t, d, 0)) })
	}
	wg.Wait()
	for _, l := range lists {
		if !slices.Equal(l, []string{"a", "b", "c"}) {
			t.Errorf("concurrent ListDead = %v, want a b c each", lists)
			break
		}
	}

	// Paused, so that the copy is not delivered on the connection the
	// test cuts (a redelivery would count an attempt).
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	before := d.current()
	ids, err := d.retryDead(rctx, consumer.DeadSelection{IDs: []string{"b", "zz"}}, func() {
		// The broker drops the connection after the copy's confirm,
		// before the ack of the dead letter.
		rabbitmqctl(t, "close_all_connections", "--vhost", vhost, "dead store test")
		waitFor(t, 10*time.Second, "the connection to drop", before.dead)
	})
	if err != nil || !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("retry cut off by the connection = %v, %v; want b", ids, err)
	}
	if left := listDead(t, d, 0); !slices.Equal(deadIDs(left), []string{"a", "c"}) {
		t.Fatalf("after the cut-off retry ListDead = %v, want a c", deadIDs(left))
	}
	if n := count(dlq); n != 2 {
		t.Errorf("dead_letter queue holds %d messages, want 2", n)
	}
	if n := count(cfg.Queue); n != 1 {
		t.Errorf("work queue holds %d messages, want the one copy", n)
	}
	if err := d.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	del := recv(t, d)
	if del.ID != "b" || del.Attempt != 1 || string(del.Body) != "p-b" || !slices.Equal(del.Headers["tenant"], []string{"t-b"}) {
		t.Errorf("retried delivery = %s attempt %d body %q headers %v", del.ID, del.Attempt, del.Body, del.Headers)
	}
	if _, ok := del.Headers[HeaderDeadReason]; ok {
		t.Errorf("retried job still carries %s: %v", HeaderDeadReason, del.Headers)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
	waitFor(t, 10*time.Second, "work queue empty", func() bool { return count(cfg.Queue) == 0 })

	ids, err = d.RemoveDead(ctx, consumer.DeadSelection{All: true})
	if err != nil || !slices.Equal(ids, []string{"a", "c"}) {
		t.Fatalf("RemoveDead(all) = %v, %v", ids, err)
	}
	if n := count(dlq); n != 0 {
		t.Errorf("after remove the dead_letter queue holds %d", n)
	}
}

// A pipeline without a dead_letter queue keeps no failed jobs.
func TestDeadStoreNone(t *testing.T) {
	d := open(t, testConfig(t), "")
	if _, err := d.ListDead(context.Background(), 0); !errors.Is(err, consumer.ErrNoDeadStore) {
		t.Errorf("ListDead = %v, want ErrNoDeadStore", err)
	}
}
