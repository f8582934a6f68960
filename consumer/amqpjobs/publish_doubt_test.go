package amqpjobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// drainIDs removes every message of queue on the broker at addr and
// returns how often each job id was there.
func drainIDs(t *testing.T, addr, queue string) map[string]int {
	t.Helper()
	conn, err := amqp.DialConfig(addr, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return ids
		}
		id, _ := m.Headers["rr_id"].(string)
		if id == "" {
			id = m.MessageId
		}
		ids[id]++
	}
}

// batchResult is one Publish call and what it reported.
type batchResult struct {
	jobs []consumer.Job
	err  error
	rep  consumer.PublishReport
}

// TestPublishConnectionCutInDoubt: the broker closes the driver's
// connections while four goroutines publish batches of 20. Every job the
// driver reported confirmed is in the queue, no job it reported failed is,
// and every job in the queue was reported confirmed or in doubt; the cut
// leaves jobs in doubt, never an "unknown exchange" failure.
func TestPublishConnectionCutInDoubt(t *testing.T) {
	t.Parallel()
	addr := testVhost(t)
	vhost := strings.TrimPrefix(mustURL(t, addr).Path, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cfg := Config{Queue: "doubt", RedialTimeout: 5 * time.Second}
	d, err := New(ctx, "doubt", Global{Addr: addr}, cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = d.Close(cctx)
	}()

	var (
		mu      sync.Mutex
		results []batchResult
		wg      sync.WaitGroup
	)
	pubCtx, stop := context.WithCancel(ctx)
	defer stop()
	payload := []byte(strings.Repeat("x", 256))
	for g := range 4 {
		wg.Go(func() {
			for b := 0; b < 4000 && pubCtx.Err() == nil; b++ {
				jobs := make([]consumer.Job, 20)
				for i := range jobs {
					jobs[i] = consumer.Job{ID: fmt.Sprintf("g%d-b%d-j%d", g, b, i), Name: "doubt", Pipeline: "doubt", Payload: payload}
				}
				err := d.Publish(ctx, jobs)
				mu.Lock()
				results = append(results, batchResult{jobs: jobs, err: err, rep: consumer.ReportOf(len(jobs), err)})
				mu.Unlock()
			}
		})
	}
	inDoubt := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range results {
			n += len(r.rep.InDoubt)
		}
		return n
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(results)
	}
	// Cut until a cut lands with confirms outstanding (each cut is
	// followed by a reconnect and more publishes).
	for cut := 0; cut < 5 && inDoubt() == 0; cut++ {
		before := count()
		waitFor(t, 30*time.Second, "publishes to flow", func() bool { return count() >= before+30 })
		gen := d.current().gen
		rabbitmqctl(t, "close_all_connections", "--vhost", vhost, "publish-doubt-test")
		waitFor(t, 30*time.Second, "the driver to reconnect", func() bool { s := d.current(); return s != nil && s.gen > gen })
		after := count()
		waitFor(t, 30*time.Second, "publishes after the reconnect", func() bool { return count() >= after+10 })
	}
	stop()
	wg.Wait()
	// Closing the driver hands back what its consumer prefetched.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if err := d.Close(cctx); err != nil {
		t.Fatal(err)
	}

	in := drainIDs(t, addr, "doubt")
	var confirmed, failed, doubt int
	for _, r := range results {
		if r.rep.Len() != len(r.jobs) {
			t.Fatalf("report %+v covers %d of %d jobs", r.rep, r.rep.Len(), len(r.jobs))
		}
		if r.err != nil && strings.Contains(r.err.Error(), "exchange") {
			t.Errorf("a connection cut was reported as an exchange problem: %v", r.err)
		}
		for _, i := range r.rep.Confirmed {
			confirmed++
			if in[r.jobs[i].ID] != 1 {
				t.Errorf("confirmed job %s is %d times in the queue, want 1", r.jobs[i].ID, in[r.jobs[i].ID])
			}
		}
		for _, i := range r.rep.Failed {
			failed++
			if in[r.jobs[i].ID] != 0 {
				t.Errorf("failed job %s is in the queue (%v)", r.jobs[i].ID, r.err)
			}
		}
		for _, i := range r.rep.InDoubt {
			doubt++
			if in[r.jobs[i].ID] > 1 {
				t.Errorf("in-doubt job %s is %d times in the queue", r.jobs[i].ID, in[r.jobs[i].ID])
			}
		}
	}
	total := 0
	for _, n := range in {
		total += n
	}
	t.Logf("%d batches: %d confirmed, %d failed, %d in doubt; %d in the queue", len(results), confirmed, failed, doubt, total)
	if total < confirmed || total > confirmed+doubt {
		t.Errorf("queue holds %d, want between confirmed %d and confirmed+in doubt %d", total, confirmed, confirmed+doubt)
	}
	if doubt == 0 {
		t.Errorf("no job was in doubt after 5 connection cuts during confirmed publishes")
	}
	for _, r := range results {
		if len(r.rep.InDoubt) > 0 && !errors.Is(r.err, consumer.ErrInDoubt) {
			t.Errorf("in-doubt jobs without ErrInDoubt in %v", r.err)
		}
	}
}

// TestPublishNackedFailsRestConfirmed: a queue that rejects publishes past
// 3 messages nacks the rest of a batch of 5: the first 3 are reported
// confirmed and the last 2 failed (not in doubt), and the queue holds
// exactly the confirmed ones.
func TestPublishNackedFailsRestConfirmed(t *testing.T) {
	needBroker(t)
	q := uniqueName(t)
	deleteQueues(t, q)
	if err := admin(t, func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-max-length": int32(3), "x-overflow": "reject-publish"}); err != nil {
			return err
		}
		return ch.QueueBind(q, q, "amq.direct", false, nil)
	}); err != nil {
		t.Fatal(err)
	}
	no := false
	d := open(t, Config{Exchange: "amq.direct", RoutingKey: q, Declare: &no}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jobs := numbered("n", 5)
	err := d.Publish(ctx, jobs)
	rep := consumer.ReportOf(len(jobs), err)
	if fmt.Sprint(rep.Confirmed) != "[0 1 2]" || fmt.Sprint(rep.Failed) != "[3 4]" || len(rep.InDoubt) != 0 {
		t.Fatalf("Publish of 5 to a queue that holds 3 = %v: report %+v, want 0-2 confirmed, 3-4 failed", err, rep)
	}
	if !errors.Is(err, ErrNacked) {
		t.Errorf("error %v does not wrap ErrNacked", err)
	}
	if n := queueCount(t, q); n != 3 {
		t.Errorf("queue holds %d, want the 3 confirmed", n)
	}
}
