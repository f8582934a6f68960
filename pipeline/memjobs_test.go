package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/retry"
)

// TestWithMemjobs runs the pipeline on the real memory driver: a job that
// fails once is retried after the backoff and acked, a job that always
// nacks with redelivery ends in the dead list after the max_attempts of
// its retry: section, and the rest are acked.
func TestWithMemjobs(t *testing.T) {
	q := memjobs.New("mem", memjobs.Config{}, nil)
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	ctx := context.Background()
	jobs := []consumer.Job{
		{ID: "flaky", Name: "j", Pipeline: "mem"},
		{ID: "doomed", Name: "j", Pipeline: "mem"},
	}
	for i := range 20 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprint("ok-", i), Name: "j", Pipeline: "mem"})
	}
	if err := q.Publish(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	var flakyRuns atomic.Int32
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		jc := jobContext(t, pl)
		switch jc.ID {
		case "flaky":
			if flakyRuns.Add(1) == 1 {
				return frame.Payload{}, fmt.Errorf("worker crashed")
			}
		case "doomed":
			return replyBody(t, frame.Reply{Type: frame.ReplyNack, Data: frame.ReplyData{Message: "always " + jc.Headers[frame.AttemptHeader][0], Requeue: true}}), nil
		}
		return frame.Payload{}, nil
	})
	p := New(Config{Name: "mem", Concurrency: 4, Rand: fixedRand,
		Retry: retry.Policy{MaxAttempts: 2, Backoff: retry.Backoff{Initial: 10 * time.Millisecond}, Configured: true}}, q, ex, nil)
	start(t, p)
	waitFor(t, "all settled", func() bool {
		st := p.Stat(ctx)
		return st.Acked == 21 && st.Dead == 1
	})
	st := p.Stat(ctx)
	if st.Retried != 2 || st.Ready != 0 || st.Delayed != 0 || st.Active != 0 || !st.Consuming {
		t.Errorf("Stat = %+v", st)
	}
	dead := q.Dead()
	if len(dead) != 1 || dead[0].Job.ID != "doomed" || dead[0].Attempts != 2 || !strings.Contains(dead[0].Reason, "always 2") {
		t.Errorf("dead list = %+v", dead)
	}
	if flakyRuns.Load() != 2 {
		t.Errorf("flaky job ran %d times, want 2", flakyRuns.Load())
	}
}

// TestWithMemjobsWorkerDecidesWithoutRetry runs, on the real memory
// driver and a pipeline without a retry: section (max_attempts 3 for what
// the worker did not decide), RoadRunner's test workers: one that counts
// its attempts in a header it sets on the legacy fail(requeue: true) reply
// and acks on its 4th delivery, one that requeues 10 times then acks, and
// a job whose worker crashes every time, which is dead after 3 attempts.
func TestWithMemjobsWorkerDecidesWithoutRetry(t *testing.T) {
	q := memjobs.New("mem", memjobs.Config{}, nil)
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	ctx := context.Background()
	if err := q.Publish(ctx, []consumer.Job{
		{ID: "fail-requeue", Name: "j", Pipeline: "mem", Headers: map[string][]string{"x-tenant": {"acme"}}},
		{ID: "requeue", Name: "j", Pipeline: "mem"},
		{ID: "crash", Name: "j", Pipeline: "mem"},
	}); err != nil {
		t.Fatal(err)
	}
	var failRuns, requeueRuns, crashRuns atomic.Int32
	// rrReply is the reply RoadRunner's SDK sends for fail(requeue: true)
	// (type 1) or requeue() (type 4) after withHeader("attempts", n): the
	// task's headers, those it received included, with the counter set.
	rrReply := func(typ int, jc frame.JobContext, n int) frame.Payload {
		h := map[string][]string{}
		for k, v := range jc.Headers {
			h[k] = v
		}
		h["attempts"] = []string{fmt.Sprint(n)}
		data := map[string]any{"message": "failed", "delay_seconds": 0, "headers": h}
		if typ == 1 {
			data["requeue"] = true
		}
		b, err := json.Marshal(map[string]any{"type": typ, "data": data})
		if err != nil {
			t.Fatal(err)
		}
		return frame.Payload{Body: b}
	}
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		jc := jobContext(t, pl)
		n := 0 // the counter the worker set on its last reply
		if v := jc.Headers["attempts"]; len(v) == 1 {
			n, _ = strconv.Atoi(v[0])
		}
		switch jc.ID {
		case "fail-requeue":
			failRuns.Add(1)
			if jc.Headers["x-tenant"][0] != "acme" {
				t.Errorf("fail-requeue run %d lost the producer's header: %v", n+1, jc.Headers)
			}
			if n+1 > 3 {
				return frame.Payload{}, nil
			}
			return rrReply(1, jc, n+1), nil
		case "requeue":
			requeueRuns.Add(1)
			if n == 10 {
				return frame.Payload{}, nil
			}
			return rrReply(4, jc, n+1), nil
		default:
			crashRuns.Add(1)
			return frame.Payload{}, fmt.Errorf("worker crashed")
		}
	})
	p := New(Config{Name: "mem", Concurrency: 3, Rand: fixedRand,
		Retry: retry.Policy{MaxAttempts: 3, Backoff: retry.Backoff{Initial: 10 * time.Millisecond}}}, q, ex, nil)
	start(t, p)
	waitFor(t, "all settled", func() bool {
		st := p.Stat(ctx)
		return st.Acked == 2 && st.Dead == 1
	})
	st := p.Stat(ctx)
	if st.Requeued != 3+10 || st.Retried != 2 || st.Ready != 0 || st.Delayed != 0 || st.Active != 0 {
		t.Errorf("Stat = %+v, want 13 requeued, 2 retried, nothing left", st)
	}
	if failRuns.Load() != 4 || requeueRuns.Load() != 11 || crashRuns.Load() != 3 {
		t.Errorf("runs: fail-requeue %d (want 4), requeue %d (want 11), crash %d (want 3)", failRuns.Load(), requeueRuns.Load(), crashRuns.Load())
	}
	if dead := q.Dead(); len(dead) != 1 || dead[0].Job.ID != "crash" || dead[0].Attempts != 3 {
		t.Errorf("dead list = %+v, want the crashing job after 3 attempts", dead)
	}
}

// BenchmarkMemjobsAck measures the pipeline's own cost per job on the
// memory driver with an executor that acks at once.
func BenchmarkMemjobsAck(b *testing.B) {
	for _, pipelining := range []int{1, 8} {
		b.Run(fmt.Sprint("pipelining=", pipelining), func(b *testing.B) { benchMemjobsAck(b, pipelining) })
	}
}

// benchMemjobsAck is BenchmarkMemjobsAck with Config.Pipelining set; the
// executor runs batches too (one done call per job).
func benchMemjobsAck(b *testing.B, pipelining int) {
	q := memjobs.New("bench", memjobs.Config{}, nil)
	defer q.Close(context.Background())
	ctx := context.Background()
	batch := make([]consumer.Job, 1000)
	for i := range batch {
		batch[i] = consumer.Job{Name: "App\\Job", Pipeline: "bench", Payload: []byte("0123456789abcdef0123456789abcdef"),
			Headers: map[string][]string{"traceparent": {"00-abc-def-01"}}}
	}
	var done atomic.Int64
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		done.Add(1)
		return frame.Payload{}, nil
	})
	p := New(Config{Name: "bench", Concurrency: 2, Pipelining: pipelining}, q, ex, nil)
	res := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { res <- p.Run(ctx) }()
	for sent := 0; sent < b.N; sent += len(batch) {
		n := min(len(batch), b.N-sent)
		if err := q.Publish(ctx, batch[:n]); err != nil {
			b.Fatal(err)
		}
	}
	for done.Load() < int64(b.N) || p.Stat(ctx).Acked < uint64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	_ = p.Stop(ctx)
	<-res
}
