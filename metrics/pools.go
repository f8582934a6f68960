package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pipevisor/pipevisor/pool"
)

// PoolState is one worker pool as the pool collector reads it.
type PoolState struct {
	// Name is the pool's name ("default" for jobs.pool).
	Name string
	// Size is pool.Pool.Size.
	Size pool.ScaleInfo
	// Workers is pool.Pool.Workers.
	Workers []pool.WorkerInfo
}

// PoolCollector reports each worker pool at scrape time, labelled by
// pool:
//
//	pool_workers{pool,state}        worker processes by state
//	pool_size{pool}                 the size the pool keeps now (min, or more while scaled up)
//	pool_min_workers{pool}          the pool's minimum size
//	pool_max_workers{pool}          the pool's maximum size (= min when it does not scale)
//	pool_waiting_execs{pool}        jobs waiting for a free worker of the pool
//	pool_scale_ups_total{pool}      scaling steps that added workers
//	pool_scale_downs_total{pool}    scaling steps that retired idle workers
//	pool_worker_restarts_total{pool,reason}  workers replaced, by pool.ExitReason (see Observer)
type PoolCollector struct {
	src      func() []PoolState
	restarts *prometheus.CounterVec

	workers, size, minW, maxW, waiting, ups, downs *prometheus.Desc
}

// NewPoolCollector returns a collector reading src at scrape time;
// register it on Metrics.Registry.
func NewPoolCollector(src func() []PoolState) *PoolCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &PoolCollector{
		src: src,
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "pool_worker_restarts_total",
			Help: "Worker processes that left the pool and were replaced, by pool and reason.",
		}, []string{"pool", "reason"}),
		workers: desc("pool_workers", "Worker processes of the pool by state (starting, ready, working, stopping).", "pool", "state"),
		size:    desc("pool_size", "The number of workers the pool keeps now: its minimum, or more while scaled up.", "pool"),
		minW:    desc("pool_min_workers", "The pool's minimum size (num_workers, autoscale.min).", "pool"),
		maxW:    desc("pool_max_workers", "The pool's maximum size (the minimum when it does not scale).", "pool"),
		waiting: desc("pool_waiting_execs", "Jobs waiting for a free worker of the pool.", "pool"),
		ups:     desc("pool_scale_ups_total", "Scaling steps that added workers to the pool (jobs were waiting for a worker).", "pool"),
		downs:   desc("pool_scale_downs_total", "Scaling steps that retired workers of the pool idle past idle_timeout.", "pool"),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.workers, c.size, c.minW, c.maxW, c.waiting, c.ups, c.downs} {
		ch <- d
	}
	c.restarts.Describe(ch)
}

// Observer returns the pool.Observer of the pool named name: it counts
// each restart in pool_worker_restarts_total{pool=name} and passes it to
// next (nil: none).
func (c *PoolCollector) Observer(name string, next pool.Observer) pool.Observer {
	return poolObserver{c: c, name: name, next: next}
}

type poolObserver struct {
	c    *PoolCollector
	name string
	next pool.Observer
}

func (o poolObserver) WorkerExited(reason pool.ExitReason) {
	o.c.restarts.WithLabelValues(o.name, string(reason)).Inc()
	if o.next != nil {
		o.next.WorkerExited(reason)
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	c.restarts.Collect(ch)
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, ps := range c.src() {
		byState := map[string]int{"starting": 0, "ready": 0, "working": 0, "stopping": 0}
		for _, w := range ps.Workers {
			if w.State != "dead" {
				byState[w.State]++
			}
		}
		for state, n := range byState {
			gauge(c.workers, n, ps.Name, state)
		}
		gauge(c.size, ps.Size.Target, ps.Name)
		gauge(c.minW, ps.Size.Min, ps.Name)
		gauge(c.maxW, ps.Size.Max, ps.Name)
		gauge(c.waiting, ps.Size.Waiting, ps.Name)
		ch <- prometheus.MustNewConstMetric(c.ups, prometheus.CounterValue, float64(ps.Size.Ups), ps.Name)
		ch <- prometheus.MustNewConstMetric(c.downs, prometheus.CounterValue, float64(ps.Size.Downs), ps.Name)
	}
}
