package metrics_test

import (
	"context"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"runtime"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/metrics"
	"github.com/pipevisor/pipevisor/retry"
)

// histSum returns the sample sum of histogram name for pipeline.
func histSum(t *testing.T, m *metrics.Metrics, name, pipelineName string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "pipeline" && lp.GetValue() == pipelineName {
					return mt.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	t.Fatalf("no %s for %s", name, pipelineName)
	return 0
}

// TestQueueWaitAndOldestAge: jobs pushed to a pipeline that is not
// consumed yet age in queue_oldest_age_seconds (the oldest one's age,
// measured from its push), and once resumed each run observes its wait
// from push to start in queue_wait_seconds; a drained queue's oldest age
// is 0.
func TestQueueWaitAndOldestAge(t *testing.T) {
	var mgr *jobs.Manager
	m := metrics.New(metrics.Sources{Stat: func(ctx context.Context) ([]consumer.Stat, error) { return mgr.Stat(ctx) }})
	mgr = jobs.New(jobs.Config{
		Factory: func(_ context.Context, p config.Pipeline) (jobs.Driver, error) {
			return memjobs.New(p.Name, *p.Memory, nil), nil
		},
		Executor: exectest.Func(okExec{}.Exec),
		Observer: m,
		Pipelines: map[string]config.Pipeline{
			"later": {Driver: config.DriverMemory, Concurrency: 2, Retry: retry.Defaults(), Memory: &memjobs.Config{}},
		},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mgr.Stop(ctx)
	})
	ctx := context.Background()
	if err := mgr.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	want(t, m, 0, "pipevisor_queue_oldest_age_seconds", "pipeline", "later", "driver", "memory")

	beforeFirst := time.Now()
	if err := mgr.Push(ctx, []consumer.Job{{Name: "a", Pipeline: "later"}}); err != nil {
		t.Fatal(err)
	}
	afterFirst := time.Now()
	if err := mgr.Push(ctx, []consumer.Job{{Name: "b", Pipeline: "later"}}); err != nil {
		t.Fatal(err)
	}
	lo := time.Since(afterFirst).Seconds()
	age, ok := sample(t, m, "pipevisor_queue_oldest_age_seconds", "pipeline", "later", "driver", "memory")
	hi := time.Since(beforeFirst).Seconds()
	if !ok || age < lo || age > hi {
		t.Fatalf("oldest age = %v (present %v), want the first job's age, in [%v, %v]", age, ok, lo, hi)
	}

	resumeAt := time.Now()
	if err := mgr.Resume(ctx, []string{"later"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, _ := sample(t, m, "pipevisor_queue_wait_seconds", "pipeline", "later"); n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("queue_wait_seconds never counted both runs")
		}
		runtime.Gosched()
	}
	// The first job waited at least from its push until the resume.
	minSum := resumeAt.Sub(afterFirst).Seconds()
	if sum := histSum(t, m, "pipevisor_queue_wait_seconds", "later"); sum < minSum {
		t.Errorf("queue_wait_seconds sum = %v, want at least %v (push to resume)", sum, minSum)
	}
	want(t, m, 0, "pipevisor_queue_oldest_age_seconds", "pipeline", "later", "driver", "memory")
}
