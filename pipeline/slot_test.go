package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
)

// batchExec is an Executor that records the batches it gets and
// answers each job with reply, in order.
type batchExec struct {
	t     *testing.T
	reply func(ctx context.Context, jc frame.JobContext) (frame.Payload, error)

	mu      sync.Mutex
	batches [][]string // job ids and attempts, per batch
}

func (b *batchExec) Run(ctx, send context.Context, pls []frame.Payload, res []pool.Result) {
	ids := make([]string, len(pls))
	jcs := make([]frame.JobContext, len(pls))
	for i, pl := range pls {
		jcs[i] = jobContext(b.t, pl)
		ids[i] = jcs[i].ID + "@" + jcs[i].Headers[frame.AttemptHeader][0]
	}
	b.mu.Lock()
	b.batches = append(b.batches, ids)
	b.mu.Unlock()
	for i := range pls {
		out, err := b.reply(ctx, jcs[i])
		res[i] = pool.Result{Out: out, Err: err, At: time.Now()}
	}
}

func (b *batchExec) seen() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]string(nil), b.batches...)
}

// queueWith returns a memory queue holding n jobs "0".."n-1".
func queueWith(t *testing.T, n int) *memjobs.Queue {
	t.Helper()
	q := memjobs.New("mem", memjobs.Config{}, nil)
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	jobs := make([]consumer.Job, n)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprint(i), Name: "j", Pipeline: "mem"}
	}
	if err := q.Publish(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	return q
}

// One slot with pipelining 8 takes the ready jobs eight at a time, in
// queue order, and settles every one of them.
func TestPipeliningTakesReadyJobsTogether(t *testing.T) {
	q := queueWith(t, 20)
	ex := &batchExec{t: t, reply: func(context.Context, frame.JobContext) (frame.Payload, error) { return frame.Payload{}, nil }}
	p := New(Config{Name: "mem", Concurrency: 1, Pipelining: 8}, q, ex, nil)
	start(t, p)
	waitFor(t, "20 acked", func() bool { return p.Stat(context.Background()).Acked == 20 })
	got := ex.seen()
	want := [][]string{
		{"0@1", "1@1", "2@1", "3@1", "4@1", "5@1", "6@1", "7@1"},
		{"8@1", "9@1", "10@1", "11@1", "12@1", "13@1", "14@1", "15@1"},
		{"16@1", "17@1", "18@1", "19@1"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches %v, want %v", got, want)
	}
	if st := p.Stat(context.Background()); st.Active != 0 || st.Ready != 0 || st.Retried != 0 {
		t.Errorf("Stat = %+v", st)
	}
}

// Each job of a batch gets its own outcome: a nack, a failed execution
// and an ack side by side, and the retried ones come back with attempt 2.
func TestPipeliningSettlesEachJobByItsReply(t *testing.T) {
	q := queueWith(t, 6)
	ex := &batchExec{t: t, reply: func(_ context.Context, jc frame.JobContext) (frame.Payload, error) {
		if jc.Headers[frame.AttemptHeader][0] != "1" {
			return frame.Payload{}, nil
		}
		switch jc.ID {
		case "1":
			return replyBody(t, frame.Reply{Type: frame.ReplyNack, Data: frame.ReplyData{Message: "later", Requeue: true}}), nil
		case "3":
			return frame.Payload{}, errors.New("worker crashed")
		}
		return frame.Payload{}, nil
	}}
	p := New(Config{Name: "mem", Concurrency: 1, Pipelining: 8, Rand: fixedRand,
		Retry: retry.Policy{MaxAttempts: 3, Backoff: retry.Backoff{Initial: time.Millisecond}}}, q, ex, nil)
	start(t, p)
	waitFor(t, "6 acked", func() bool { return p.Stat(context.Background()).Acked == 6 })
	st := p.Stat(context.Background())
	if st.Retried != 2 || st.Dead != 0 || st.Active != 0 {
		t.Errorf("Stat = %+v, want 2 retried, none dead", st)
	}
	got := ex.seen()
	if len(got) < 2 || fmt.Sprint(got[0]) != "[0@1 1@1 2@1 3@1 4@1 5@1]" {
		t.Fatalf("batches %v, want all six together first", got)
	}
	var rerun []string
	for _, b := range got[1:] {
		rerun = append(rerun, b...)
	}
	if fmt.Sprint(rerun) != "[1@2 3@2]" {
		t.Errorf("runs after the first batch %v, want jobs 1 and 3 at attempt 2", rerun)
	}
}

// The jobs of a batch count as active while it runs.
func TestPipeliningBatchCountsAsActive(t *testing.T) {
	q := queueWith(t, 5)
	release := make(chan struct{})
	ex := &batchExec{t: t, reply: func(context.Context, frame.JobContext) (frame.Payload, error) {
		<-release
		return frame.Payload{}, nil
	}}
	p := New(Config{Name: "mem", Concurrency: 1, Pipelining: 8}, q, ex, nil)
	start(t, p)
	waitFor(t, "the batch running", func() bool { return len(ex.seen()) == 1 })
	if st := p.Stat(context.Background()); st.Active != 5 || st.Ready != 0 {
		t.Errorf("Stat while the batch runs = %+v, want 5 active, 0 ready", st)
	}
	close(release)
	waitFor(t, "5 acked", func() bool { return p.Stat(context.Background()).Acked == 5 })
}

// A consumer that cannot hand out ready jobs, or pipelining 1, runs jobs
// in batches of one.
func TestPipeliningNeedsAReadyReceiver(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pipelining int
		c          func(t *testing.T) consumer.Consumer
	}{
		{"fake consumer", 8, func(t *testing.T) consumer.Consumer {
			f := newFakeConsumer(16)
			for i := range 4 {
				f.push(fmt.Sprint(i), 1, nil)
			}
			return f
		}},
		{"pipelining 1", 1, func(t *testing.T) consumer.Consumer { return queueWith(t, 4) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := &batchExec{t: t, reply: func(context.Context, frame.JobContext) (frame.Payload, error) { return frame.Payload{}, nil }}
			p := New(Config{Name: "mem", Concurrency: 1, Pipelining: tc.pipelining}, tc.c(t), ex, nil)
			start(t, p)
			waitFor(t, "4 batches", func() bool { return len(ex.seen()) == 4 })
			for _, b := range ex.seen() {
				if len(b) != 1 {
					t.Errorf("batch %v, want one job", b)
				}
			}
		})
	}
}

// Stop with a batch running: the job interrupted by the end of the grace
// period and the jobs behind it that never reached a worker go back to
// the queue unspent.
func TestPipeliningStopReleasesTheRestOfTheBatch(t *testing.T) {
	q := queueWith(t, 4)
	started := make(chan struct{})
	var once sync.Once
	ex := &batchExec{t: t, reply: func(ctx context.Context, jc frame.JobContext) (frame.Payload, error) {
		if jc.ID == "0" {
			once.Do(func() { close(started) })
			<-ctx.Done()
			return frame.Payload{}, fmt.Errorf("interrupted: %w", context.Cause(ctx))
		}
		return frame.Payload{}, fmt.Errorf("not sent: %w", context.Cause(ctx))
	}}
	p := New(Config{Name: "mem", Concurrency: 1, Pipelining: 8}, q, ex, nil)
	r := start(t, p)
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = p.Stop(ctx)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	st, err := q.Stat(context.Background())
	if err != nil || st.Ready != 4 {
		t.Errorf("queue after Stop: %+v, %v; want the 4 jobs ready again", st, err)
	}
	if pst := p.Stat(context.Background()); pst.Retried != 0 || pst.Dead != 0 || pst.Acked != 0 {
		t.Errorf("pipeline Stat = %+v, want nothing spent", pst)
	}
}
