package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/metrics"
	"github.com/pipevisor/pipevisor/pipeline"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
)

// sample returns the value of the metric name whose labels include every
// name=value pair of labels (a histogram: its sample count), and whether
// it exists.
func sample(t *testing.T, m *metrics.Metrics, name string, labels ...string) (float64, bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, mt := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range mt.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return value(mt), true
		}
	}
	return 0, false
}

func value(mt *dto.Metric) float64 {
	switch {
	case mt.Counter != nil:
		return mt.Counter.GetValue()
	case mt.Gauge != nil:
		return mt.Gauge.GetValue()
	case mt.Histogram != nil:
		return float64(mt.Histogram.GetSampleCount())
	}
	return -1
}

func want(t *testing.T, m *metrics.Metrics, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := sample(t, m, name, labels...)
	if !ok || got != v {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, v)
	}
}

// fate is a settled job that ran on a worker (or, for Release, did not).
func fate(a consumer.Action, took time.Duration) pipeline.Fate {
	f := pipeline.Fate{Action: a, Took: took}
	if a != consumer.Release {
		f.Exec = took / 2
	}
	return f
}

func TestObserveCountsFates(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	for _, a := range []consumer.Action{consumer.Ack, consumer.Ack, consumer.Retry, consumer.Requeue, consumer.Dead, consumer.Release} {
		m.Observe("emails", fate(a, 10*time.Millisecond))
	}
	m.Observe("orders", fate(consumer.Ack, time.Second))
	want(t, m, 6, "pipevisor_jobs_received_total", "pipeline", "emails")
	want(t, m, 2, "pipevisor_jobs_acked_total", "pipeline", "emails")
	want(t, m, 1, "pipevisor_jobs_retried_total", "pipeline", "emails")
	want(t, m, 1, "pipevisor_jobs_requeued_total", "pipeline", "emails")
	want(t, m, 1, "pipevisor_jobs_dead_total", "pipeline", "emails")
	want(t, m, 1, "pipevisor_jobs_released_total", "pipeline", "emails")
	want(t, m, 6, "pipevisor_job_duration_seconds", "pipeline", "emails")
	want(t, m, 1, "pipevisor_jobs_acked_total", "pipeline", "orders")
	want(t, m, 0, "pipevisor_jobs_dead_total", "pipeline", "orders")
}

func TestObserveTimesRunsAndCountsFailures(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	m.Observe("emails", fate(consumer.Ack, time.Millisecond))
	failed := fate(consumer.Retry, time.Millisecond)
	failed.Failed = true
	m.Observe("emails", failed) // ERROR frame
	m.Observe("emails", failed) // exec_ttl
	// No worker, pool closing, shutdown: released, not run, not failed.
	m.Observe("emails", fate(consumer.Release, time.Millisecond))
	m.Observe("emails", fate(consumer.Release, time.Millisecond))

	want(t, m, 3, "pipevisor_exec_duration_seconds", "pipeline", "emails")
	want(t, m, 2, "pipevisor_jobs_failed_total", "pipeline", "emails")
}

func TestObserveDoesNotAllocate(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	m.Observe("emails", fate(consumer.Ack, time.Millisecond)) // creates the series
	f := fate(consumer.Ack, time.Millisecond)
	if n := testing.AllocsPerRun(200, func() {
		m.Observe("emails", f)
	}); n != 0 {
		t.Fatalf("%v allocations per job", n)
	}
}

type okExec struct{}

func (x okExec) Exec(context.Context, frame.Payload) (frame.Payload, error) {
	return frame.Payload{}, nil
}

func TestPushed(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	batch := []consumer.Job{{Pipeline: "a"}, {Pipeline: "a"}, {Pipeline: "b"}, {Pipeline: "a"}}
	m.Pushed(batch, nil)
	m.Pushed(batch, &consumer.BatchError{Failed: map[int]error{2: errors.New("nope"), 3: errors.New("nope")}})
	m.Pushed(batch[:1], errors.New("broker down"))
	m.Pushed([]consumer.Job{{Pipeline: "typo1"}, {Pipeline: "typo2"}}, fmt.Errorf("jobs: push: %w", consumer.ErrUnknownPipeline))
	want(t, m, 7, "pipevisor_push_jobs_total", "pipeline", "a")
	want(t, m, 2, "pipevisor_push_errors_total", "pipeline", "a")
	want(t, m, 2, "pipevisor_push_jobs_total", "pipeline", "b")
	want(t, m, 1, "pipevisor_push_errors_total", "pipeline", "b")
	want(t, m, 2, "pipevisor_push_errors_total", "pipeline", metrics.UnknownPipeline)
	if _, ok := sample(t, m, "pipevisor_push_jobs_total", "pipeline", "typo1"); ok {
		t.Fatal("an unknown pipeline got its own series")
	}
}

func TestWorkerRestarts(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	m.WorkerExited(pool.ExitMaxJobs)
	m.WorkerExited(pool.ExitMaxJobs)
	m.WorkerExited(pool.ExitCrashed)
	m.WorkerExited("something new")
	want(t, m, 2, "pipevisor_worker_restarts_total", "reason", "max_jobs")
	want(t, m, 1, "pipevisor_worker_restarts_total", "reason", "crashed")
	want(t, m, 1, "pipevisor_worker_restarts_total", "reason", "other")
	want(t, m, 0, "pipevisor_worker_restarts_total", "reason", "reset")
}

func TestScrapeTimeSources(t *testing.T) {
	stats := []consumer.Stat{
		{Pipeline: "emails", Driver: "memory", Ready: 7, Delayed: 2, Reserved: 0, Active: 3, Consuming: true},
		{Pipeline: "orders", Driver: "kafka", Ready: 12, Delayed: -1, Active: 0, Consuming: false},
	}
	var statErr error
	m := metrics.New(metrics.Sources{
		Stat: func(context.Context) ([]consumer.Stat, error) { return stats, statErr },
		Workers: func() []pool.WorkerInfo {
			return []pool.WorkerInfo{{Pid: 1, State: "ready", RSS: 10 << 20}, {Pid: 2, State: "working", RSS: 30 << 20}, {Pid: 3, State: "working", RSS: 20 << 20}}
		},
	})
	want(t, m, 3, "pipevisor_jobs_in_flight", "pipeline", "emails")
	want(t, m, 7, "pipevisor_queue_ready", "pipeline", "emails", "driver", "memory")
	want(t, m, 2, "pipevisor_queue_delayed", "pipeline", "emails")
	want(t, m, 12, "pipevisor_queue_ready", "pipeline", "orders", "driver", "kafka")
	if _, ok := sample(t, m, "pipevisor_queue_delayed", "pipeline", "orders"); ok {
		t.Error("queue_delayed reported for a driver that cannot tell")
	}
	want(t, m, 1, "pipevisor_pipeline_consuming", "pipeline", "emails")
	want(t, m, 0, "pipevisor_pipeline_consuming", "pipeline", "orders")
	want(t, m, 1, "pipevisor_workers", "state", "ready")
	want(t, m, 2, "pipevisor_workers", "state", "working")
	want(t, m, 0, "pipevisor_workers", "state", "stopping")
	want(t, m, 60<<20, "pipevisor_workers_rss_bytes")
	want(t, m, 30<<20, "pipevisor_worker_rss_max_bytes")

	statErr = jobs.ErrStopped
	if _, ok := sample(t, m, "pipevisor_jobs_in_flight", "pipeline", "emails"); ok {
		t.Error("pipeline gauges reported while Stat fails")
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	m.Observe("emails", fate(consumer.Ack, time.Millisecond))
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `pipevisor_jobs_acked_total{pipeline="emails"} 1`) ||
		!strings.Contains(string(b), "go_goroutines") {
		t.Fatalf("%d\n%s", resp.StatusCode, b)
	}
}

// TestThroughManager runs jobs on the memory driver through a jobs.Manager
// wired the way serve wires it and checks the counters against them.
func TestThroughManager(t *testing.T) {
	var mgr *jobs.Manager
	m := metrics.New(metrics.Sources{Stat: func(ctx context.Context) ([]consumer.Stat, error) { return mgr.Stat(ctx) }})
	mgr = jobs.New(jobs.Config{
		Factory: func(_ context.Context, p config.Pipeline) (jobs.Driver, error) {
			return memjobs.New(p.Name, *p.Memory, nil), nil
		},
		Executor: exectest.Func(okExec{}.Exec),
		Observer: m,
		Pipelines: map[string]config.Pipeline{
			"emails": {Driver: config.DriverMemory, Concurrency: 4, Retry: retry.Defaults(), Memory: &memjobs.Config{}},
		},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mgr.Stop(ctx)
	})
	if err := mgr.Start(context.Background(), []string{"emails"}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	batch := make([]consumer.Job, n)
	for i := range batch {
		batch[i] = consumer.Job{Name: "Send", Pipeline: "emails", Payload: []byte("x")}
	}
	err := mgr.Push(context.Background(), batch)
	m.Pushed(batch, err)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v, _ := sample(t, m, "pipevisor_jobs_acked_total", "pipeline", "emails"); v == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not every job acked within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	want(t, m, n, "pipevisor_push_jobs_total", "pipeline", "emails")
	want(t, m, n, "pipevisor_jobs_received_total", "pipeline", "emails")
	want(t, m, n, "pipevisor_exec_duration_seconds", "pipeline", "emails")
	want(t, m, 0, "pipevisor_jobs_failed_total", "pipeline", "emails")
	want(t, m, 0, "pipevisor_queue_ready", "pipeline", "emails")
	want(t, m, 1, "pipevisor_pipeline_consuming", "pipeline", "emails")
}
