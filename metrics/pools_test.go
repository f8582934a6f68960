package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pipevisor/pipevisor/pool"
)

// countingObserver counts the restarts passed on to it.
type countingObserver struct{ n int }

func (o *countingObserver) WorkerExited(pool.ExitReason) { o.n++ }

// sample returns the value of the series name with exactly labels.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

func TestPoolCollector(t *testing.T) {
	c := NewPoolCollector(func() []PoolState {
		return []PoolState{
			{Name: "default", Size: pool.ScaleInfo{Min: 2, Max: 2, Target: 2}, Workers: []pool.WorkerInfo{{State: "ready"}, {State: "working"}}},
			{Name: "py", Size: pool.ScaleInfo{Min: 1, Max: 8, Target: 5, Waiting: 3, Ups: 2, Downs: 1},
				Workers: []pool.WorkerInfo{{State: "working"}, {State: "working"}, {State: "starting"}, {State: "dead"}}},
		}
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	next := &countingObserver{}
	obs := c.Observer("py", next)
	obs.WorkerExited(pool.ExitMaxJobs)
	obs.WorkerExited(pool.ExitMaxJobs)
	c.Observer("default", nil).WorkerExited(pool.ExitCrashed)

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"pipevisor_pool_workers", map[string]string{"pool": "py", "state": "working"}, 2},
		{"pipevisor_pool_workers", map[string]string{"pool": "py", "state": "starting"}, 1},
		{"pipevisor_pool_workers", map[string]string{"pool": "default", "state": "ready"}, 1},
		{"pipevisor_pool_size", map[string]string{"pool": "py"}, 5},
		{"pipevisor_pool_min_workers", map[string]string{"pool": "py"}, 1},
		{"pipevisor_pool_max_workers", map[string]string{"pool": "py"}, 8},
		{"pipevisor_pool_waiting_execs", map[string]string{"pool": "py"}, 3},
		{"pipevisor_pool_scale_ups_total", map[string]string{"pool": "py"}, 2},
		{"pipevisor_pool_scale_downs_total", map[string]string{"pool": "py"}, 1},
		{"pipevisor_pool_scale_ups_total", map[string]string{"pool": "default"}, 0},
		{"pipevisor_pool_worker_restarts_total", map[string]string{"pool": "py", "reason": "max_jobs"}, 2},
		{"pipevisor_pool_worker_restarts_total", map[string]string{"pool": "default", "reason": "crashed"}, 1},
	} {
		if got, ok := sample(t, reg, tc.name, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if next.n != 2 {
		t.Errorf("next observer saw %d restarts, want 2", next.n)
	}
}
