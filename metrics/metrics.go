// Package metrics exposes the supervisor's Prometheus metrics, on a
// registry of its own (never the global default one).
//
// Per-job numbers are pushed in by the code paths that decide them, at the
// cost of a map lookup under a read lock and a few atomic adds (label
// children are resolved once per pipeline, nothing is allocated per job):
//
//   - Metrics.Observe (a pipeline.Observer): every job's fate;
//   - Metrics.Executor wraps the worker pool: exec duration and failures;
//   - Metrics.Pushed: jobs published through jobs.Push;
//   - Metrics.WorkerExited (a pool.Observer): worker restarts by reason.
//
// Everything else is read at scrape time from Sources: queue depths and
// in-flight jobs from jobs.Manager.Stat, workers by state and their memory
// from pool.Workers.
//
// Metric names (all prefixed pipevisor_):
//
//	jobs_received_total{pipeline}          jobs whose fate was decided (= the sum of the five below)
//	jobs_acked_total{pipeline}             settled Ack
//	jobs_retried_total{pipeline}           settled Retry (worker NACK with requeue, or a failure below max_attempts)
//	jobs_requeued_total{pipeline}          settled Requeue (worker REQUEUE)
//	jobs_dead_total{pipeline}              settled Dead (dead-lettered or dropped)
//	jobs_released_total{pipeline}          handed back unrun (no free worker, shutdown)
//	jobs_failed_total{pipeline}            executions that failed on the worker: ERROR frame, crash, exec_ttl, broken reply frame
//	job_duration_seconds{pipeline}         histogram, receive to settle
//	exec_duration_seconds{pipeline}        histogram, one execution on a worker
//	queue_wait_seconds{pipeline}           histogram, enqueue (push, or end of delay) to the start of the run; drivers that know the enqueue time (memory, kafka)
//	queue_oldest_age_seconds{pipeline,driver}  age of the oldest job waiting to be received, 0 when none (scrape time; drivers that can tell: memory, boltdb, kafka)
//	jobs_in_flight{pipeline}               received and not yet settled (scrape time)
//	queue_ready{pipeline,driver}           waiting: local queue depth, AMQP queue depth, SQS ApproximateNumberOfMessages, Kafka lag
//	queue_delayed{pipeline,driver}         waiting for a delay to pass
//	queue_reserved{pipeline,driver}        handed out by the broker, not yet settled
//	pipeline_consuming{pipeline}           1 while consuming, 0 while paused or down
//	push_jobs_total{pipeline}              jobs published through jobs.Push
//	push_errors_total{pipeline}            jobs that failed to publish
//	workers{state}                         worker processes by state (scrape time)
//	workers_rss_bytes                      resident memory of all workers
//	worker_rss_max_bytes                   resident memory of the largest worker
//	worker_restarts_total{reason}          workers replaced, by pool.ExitReason
//
// The Go runtime and process collectors of client_golang are registered
// too (go_*, process_*).
package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/pipeline"
	"github.com/pipevisor/pipevisor/pool"
)

// Namespace prefixes every metric of this package.
const Namespace = "pipevisor"

// UnknownPipeline labels pushes to a pipeline that does not exist, so
// that typos in producers cannot create series without bound.
const UnknownPipeline = "(unknown)"

// ScrapeTimeout bounds reading the Sources during one scrape.
const ScrapeTimeout = 5 * time.Second

// durationBuckets suit jobs from a millisecond to several minutes.
var durationBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Sources are read at scrape time. A nil field is skipped.
type Sources struct {
	// Stat returns every pipeline's state (jobs.Manager.Stat).
	Stat func(ctx context.Context) ([]consumer.Stat, error)
	// Workers describes the worker processes (pool.Pool.Workers).
	Workers func() []pool.WorkerInfo
}

// Metrics holds the collectors. All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	received, acked, retried, requeued, dead, released, failed *prometheus.CounterVec
	jobDur, execDur, wait                                      *prometheus.HistogramVec
	pushJobs, pushErrs                                         *prometheus.CounterVec
	restarts                                                   *prometheus.CounterVec

	mu    sync.RWMutex
	pipes map[string]*series // by pipeline name

	exits map[pool.ExitReason]prometheus.Counter // known reasons, resolved up front
}

// series are one pipeline's label children.
type series struct {
	received prometheus.Counter
	byAction [consumer.Release + 1]prometheus.Counter // indexed by consumer.Action
	failed   prometheus.Counter
	jobDur   prometheus.Observer
	execDur  prometheus.Observer
	wait     prometheus.Observer
	pushJobs prometheus.Counter
	pushErrs prometheus.Counter
}

// New creates the collectors and registers them, with a collector that
// reads src at scrape time, on a new registry.
func New(src Sources) *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{"pipeline"})
	}
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: durationBuckets}, []string{"pipeline"})
	}
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		received: counter("jobs_received_total", "Jobs whose fate was decided (the sum of acked, retried, requeued, dead and released)."),
		acked:    counter("jobs_acked_total", "Jobs settled as Ack."),
		retried:  counter("jobs_retried_total", "Jobs settled as Retry: a NACK with requeue, or a failure below max_attempts."),
		requeued: counter("jobs_requeued_total", "Jobs settled as Requeue (the worker asked for it)."),
		dead:     counter("jobs_dead_total", "Jobs settled as Dead: dead-lettered, or dropped without a dead-letter target."),
		released: counter("jobs_released_total", "Jobs handed back to the broker unrun (no free worker, shutdown); no attempt spent."),
		failed:   counter("jobs_failed_total", "Executions that failed on the worker: ERROR frame, crash, exec_ttl, broken reply frame."),
		jobDur:   hist("job_duration_seconds", "Time from receiving a job to settling it."),
		execDur:  hist("exec_duration_seconds", "Time one execution took on a worker."),
		wait:     hist("queue_wait_seconds", "Time from a job's enqueue (its push, or the end of its delay) to the start of its run, for drivers that know the enqueue time (memory, kafka)."),
		pushJobs: counter("push_jobs_total", "Jobs published through jobs.Push (RPC, CLI, clients)."),
		pushErrs: counter("push_errors_total", "Jobs that jobs.Push failed to publish."),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "worker_restarts_total",
			Help: "Worker processes that left the pool and were replaced, by reason.",
		}, []string{"reason"}),
		pipes: make(map[string]*series),
		exits: make(map[pool.ExitReason]prometheus.Counter),
	}
	for _, r := range []pool.ExitReason{
		pool.ExitMaxJobs, pool.ExitTTL, pool.ExitIdleTTL, pool.ExitMemory, pool.ExitReset,
		pool.ExitStopRequested, pool.ExitStrayOutput, pool.ExitKilled, pool.ExitCrashed, pool.ExitStartFailed, pool.ExitOther,
	} {
		m.exits[r] = m.restarts.WithLabelValues(string(r))
	}
	m.reg.MustRegister(
		m.received, m.acked, m.retried, m.requeued, m.dead, m.released, m.failed,
		m.jobDur, m.execDur, m.wait, m.pushJobs, m.pushErrs, m.restarts,
		newScraper(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry every collector is registered on, to
// gather from or to register more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// series returns the label children of pipeline, creating them on first
// use.
func (m *Metrics) series(name string) *series {
	m.mu.RLock()
	s := m.pipes[name]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.pipes[name]; s != nil {
		return s
	}
	s = &series{
		received: m.received.WithLabelValues(name),
		failed:   m.failed.WithLabelValues(name),
		jobDur:   m.jobDur.WithLabelValues(name),
		execDur:  m.execDur.WithLabelValues(name),
		wait:     m.wait.WithLabelValues(name),
		pushJobs: m.pushJobs.WithLabelValues(name),
		pushErrs: m.pushErrs.WithLabelValues(name),
	}
	s.byAction[consumer.Ack] = m.acked.WithLabelValues(name)
	s.byAction[consumer.Retry] = m.retried.WithLabelValues(name)
	s.byAction[consumer.Requeue] = m.requeued.WithLabelValues(name)
	s.byAction[consumer.Dead] = m.dead.WithLabelValues(name)
	s.byAction[consumer.Release] = m.released.WithLabelValues(name)
	m.pipes[name] = s
	return s
}

// Observe records the fate of one job. It implements pipeline.Observer:
// the pipeline tells which jobs ran on a worker (their exec time is
// observed) and which of those the worker failed.
func (m *Metrics) Observe(name string, f pipeline.Fate) {
	s := m.series(name)
	s.received.Inc()
	if int(f.Action) < len(s.byAction) && s.byAction[f.Action] != nil {
		s.byAction[f.Action].Inc()
	}
	s.jobDur.Observe(f.Took.Seconds())
	if f.Action != consumer.Release {
		s.execDur.Observe(f.Exec.Seconds())
	}
	if f.Wait >= 0 {
		s.wait.Observe(f.Wait.Seconds())
	}
	if f.Failed {
		s.failed.Inc()
	}
}

// WorkerExited counts a worker restart. It implements pool.Observer.
func (m *Metrics) WorkerExited(reason pool.ExitReason) {
	c, ok := m.exits[reason]
	if !ok {
		c = m.exits[pool.ExitOther]
	}
	c.Inc()
}

// Pushed records the outcome of one jobs.Push call: every job counts in
// push_jobs_total of its pipeline, and in push_errors_total too when it
// failed (the jobs a *consumer.BatchError names, else all of them when err
// is not nil). Jobs for a pipeline that does not exist are counted under
// UnknownPipeline.
func (m *Metrics) Pushed(jobs []consumer.Job, err error) {
	var failed map[int]error
	all := err != nil
	if all {
		var be *consumer.BatchError
		if errors.As(err, &be) && len(be.Failed) > 0 {
			failed, all = be.Failed, false
		}
	}
	unknown := errors.Is(err, consumer.ErrUnknownPipeline)
	var s *series
	for i := range jobs {
		if s == nil || (i > 0 && jobs[i].Pipeline != jobs[i-1].Pipeline) {
			name := jobs[i].Pipeline
			if unknown && !m.known(name) {
				name = UnknownPipeline
			}
			s = m.series(name)
		}
		s.pushJobs.Inc()
		if all {
			s.pushErrs.Inc()
		} else if _, bad := failed[i]; bad {
			s.pushErrs.Inc()
		}
	}
}

// known reports whether name has series already (a pipeline that ran or
// was pushed to successfully).
func (m *Metrics) known(name string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pipes[name] != nil
}
