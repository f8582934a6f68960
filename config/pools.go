package config

import (
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pipevisor/pipevisor/pool"
)

// DefaultPool is the name of the default pool: jobs.pool, or
// jobs.pools.default when jobs.pool is not written. A pipeline without a
// pool key runs on it.
const DefaultPool = "default"

// RoadRunner's dynamic_allocator defaults and limits.
const (
	DefaultDynamicMaxWorkers = 10
	DefaultSpawnRate         = pool.DefaultSpawnRate
	DefaultScaleIdle         = pool.DefaultScaleIdle
	// MaxSpawnRate is the largest spawn_rate (RoadRunner caps it at 100).
	MaxSpawnRate = 100
)

// PoolOf returns the name of the pool p runs on: its pool key, or
// DefaultPool.
func (j Jobs) PoolOf(p Pipeline) string {
	if p.Pool != "" {
		return p.Pool
	}
	return DefaultPool
}

// hasDefaultPool reports whether the default pool exists: jobs.pool is
// written, jobs.pools has an entry named DefaultPool, or jobs.pools is
// empty (jobs.pool then applies with its defaults, as it always has).
func (r *Root) hasDefaultPool() bool {
	_, named := r.Jobs.Pools[DefaultPool]
	return r.Jobs.Pool.set || named || len(r.Jobs.Pools) == 0
}

// PoolNames returns the names of the pools to run, sorted: DefaultPool
// when the default pool exists, and every jobs.pools key.
func (r *Root) PoolNames() []string {
	var names []string
	if r.hasDefaultPool() {
		names = append(names, DefaultPool)
	}
	for name := range r.Jobs.Pools {
		if name != DefaultPool {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// jobsPool returns the section of the pool named name: jobs.pool for
// DefaultPool unless only jobs.pools.default is written.
func (r *Root) jobsPool(name string) JobsPool {
	if name == DefaultPool && (r.Jobs.Pool.set || len(r.Jobs.Pools) == 0) {
		return r.Jobs.Pool
	}
	if jp, ok := r.Jobs.Pools[name]; ok {
		return jp
	}
	return r.Jobs.Pool
}

// PoolConfigFor returns the configuration to run the pool named name (one
// of PoolNames), as PoolConfig does for the default pool; false when
// there is no such pool.
func (r *Root) PoolConfigFor(name string) (pool.Config, bool) {
	if !slices.Contains(r.PoolNames(), name) {
		return pool.Config{}, false
	}
	return r.poolConfig(r.jobsPool(name)), true
}

// MaxWorkers is the most workers the pool may run: its scaling maximum,
// or num_workers.
func (p JobsPool) MaxWorkers() int {
	return max(p.NumWorkers, p.Scale.Max)
}

// DefaultConcurrency is the number of slots a pipeline on the pool gets
// unless it sets its concurrency: one per worker the pool may run, two
// with pipelining. A slot settles its batch after the worker answered
// it; with batches of several jobs that takes long enough that the worker
// would wait, so a second slot hands it its next batch meanwhile.
func (p JobsPool) DefaultConcurrency() int {
	n := max(1, p.MaxWorkers())
	if p.Pipelining > 1 {
		n *= 2
	}
	return n
}

// DefaultConcurrency is JobsPool.DefaultConcurrency of the pool named
// name (one of PoolNames).
func (r *Root) DefaultConcurrency(name string) int {
	return r.jobsPool(name).DefaultConcurrency()
}

// applyDefaults fills in the defaults of a pool section, and turns
// dynamic_allocator or autoscale into Config.Scale.
func (p *JobsPool) applyDefaults() {
	if a := p.Autoscale; a != nil {
		if a.Min > 0 {
			p.NumWorkers = a.Min
		}
	}
	if p.NumWorkers == 0 {
		p.NumWorkers = runtime.NumCPU()
	}
	for _, d := range []*time.Duration{&p.AllocateTimeout, &p.DestroyTimeout, &p.ResetTimeout} {
		if *d == 0 {
			*d = DefaultPoolTimeout
		}
	}
	if p.Supervisor.WatchTick == 0 {
		p.Supervisor.WatchTick = DefaultWatchTick
	}
	if p.Pipelining == 0 {
		p.Pipelining = DefaultPipelining
	}
	switch {
	case p.Autoscale != nil:
		a := p.Autoscale
		if a.Min == 0 {
			a.Min = p.NumWorkers
		}
		if a.SpawnRate == 0 {
			a.SpawnRate = DefaultSpawnRate
		}
		if a.IdleTimeout == 0 {
			a.IdleTimeout = DefaultScaleIdle
		}
		p.Scale = pool.Scale{Max: a.Max, SpawnRate: a.SpawnRate, IdleTimeout: a.IdleTimeout, WaitThreshold: a.WaitThreshold}
	case p.DynamicAllocator != nil:
		d := p.DynamicAllocator
		if d.MaxWorkers == 0 {
			d.MaxWorkers = DefaultDynamicMaxWorkers
		}
		if d.SpawnRate == 0 {
			d.SpawnRate = DefaultSpawnRate
		}
		if d.IdleTimeout == 0 {
			d.IdleTimeout = DefaultScaleIdle
		}
		p.Scale = pool.Scale{
			Max:         p.NumWorkers + int(min(d.MaxWorkers, MaxNumWorkers)),
			SpawnRate:   int(min(d.SpawnRate, MaxSpawnRate)),
			IdleTimeout: d.IdleTimeout,
		}
	}
}

// poolPath is the YAML path of the pool named name.
func (r *Root) poolPath(name string) string {
	if name == DefaultPool && (r.Jobs.Pool.set || len(r.Jobs.Pools) == 0) {
		return "jobs.pool"
	}
	return joinPath("jobs.pools", name)
}

// validatePools checks every pool's keys and which pool each pipeline
// runs on.
func (r *Root) validatePools() (errs, warnings []*Error) {
	add := func(path, format string, args ...any) {
		errs = append(errs, errAt(path, 0, format, args...))
	}
	if _, named := r.Jobs.Pools[DefaultPool]; named && r.Jobs.Pool.set {
		add(joinPath("jobs.pools", DefaultPool), "the default pool is jobs.pool here: write it once, under jobs.pool or under jobs.pools.%s", DefaultPool)
	}
	names := r.PoolNames()
	for _, name := range names {
		path := r.poolPath(name)
		jp := r.jobsPool(name)
		if name == "" || strings.ContainsFunc(name, isSpaceOrControl) {
			add(path, "a pool name must be non-empty without spaces or control characters")
		}
		if len(jp.Command) == 0 && len(r.Server.Command) == 0 && path != "jobs.pool" {
			add(joinPath(path, "command"), "required (or server.command): the command that starts one of this pool's workers")
		}
		for i, arg := range jp.Command {
			if arg == "" {
				add(indexPath(joinPath(path, "command"), i), "must not be empty")
			}
		}
		for k := range jp.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				add(joinPath(joinPath(path, "env"), k), "not a valid environment variable name")
			}
		}
		if n := jp.NumWorkers; n < 0 || n > MaxNumWorkers {
			add(joinPath(path, "num_workers"), "must be from 0 to %d (0 means one per CPU; got %d)", MaxNumWorkers, n)
		}
		if n := jp.Pipelining; n < 1 || n > MaxPipelining {
			add(joinPath(path, "pipelining"), "must be from 1 to %d, the most jobs written to one worker ahead of its replies (0 means 1; got %d)", MaxPipelining, n)
		}
		errs = append(errs, validateScaling(jp, path)...)
		if path != "jobs.pool" { // jobs.pool's are in ignoredWarnings
			warnings = append(warnings, ignoredPoolKeys(jp, path)...)
		}
	}
	for _, name := range r.Jobs.PipelineNames() {
		p := r.Jobs.Pipelines[name]
		path := joinPath(joinPath("jobs.pipelines", name), "pool")
		switch {
		case p.Pool == "" && !r.hasDefaultPool():
			add(path, "required: no default pool to run on (jobs.pool is not written and jobs.pools has no %s; pools: %s)",
				quote(DefaultPool), strings.Join(names, ", "))
		case p.Pool != "" && !slices.Contains(names, p.Pool):
			add(path, "unknown pool %s (pools: %s)", quote(p.Pool), strings.Join(names, ", "))
		default:
			jp := r.jobsPool(r.Jobs.PoolOf(p))
			if n := jp.DefaultConcurrency(); p.Concurrency > n && jp.MaxWorkers() > 0 {
				warnings = append(warnings, errAt(joinPath(joinPath("jobs.pipelines", name), "concurrency"), 0,
					"%d is more than %s keeps busy (%d workers, %d slots): the extra jobs wait for a free worker", p.Concurrency, r.poolPath(r.Jobs.PoolOf(p)), jp.MaxWorkers(), n))
			}
		}
	}
	return errs, warnings
}

// validateScaling checks a pool's dynamic_allocator and autoscale.
func validateScaling(jp JobsPool, path string) []*Error {
	var errs []*Error
	add := func(path, format string, args ...any) {
		errs = append(errs, errAt(path, 0, format, args...))
	}
	if jp.Autoscale != nil && jp.DynamicAllocator != nil {
		add(joinPath(path, "autoscale"), "write one of autoscale and dynamic_allocator")
	}
	if a := jp.Autoscale; a != nil {
		ap := joinPath(path, "autoscale")
		switch {
		case a.Min < 1:
			add(joinPath(ap, "min"), "must be >= 1 (got %d)", a.Min)
		case a.Max < a.Min:
			add(joinPath(ap, "max"), "must be >= min (%d), got %d", a.Min, a.Max)
		case a.Max > MaxNumWorkers:
			add(joinPath(ap, "max"), "must be at most %d (got %d)", MaxNumWorkers, a.Max)
		}
		if a.SpawnRate < 1 || a.SpawnRate > MaxSpawnRate {
			add(joinPath(ap, "spawn_rate"), "must be from 1 to %d (got %d)", MaxSpawnRate, a.SpawnRate)
		}
		if a.IdleTimeout < 0 {
			add(joinPath(ap, "idle_timeout"), "must be > 0")
		}
		if a.WaitThreshold < 0 {
			add(joinPath(ap, "wait_threshold"), "must be >= 0")
		}
	}
	if d := jp.DynamicAllocator; d != nil {
		if jp.Scale.Max > MaxNumWorkers {
			add(joinPath(joinPath(path, "dynamic_allocator"), "max_workers"), "num_workers + max_workers must be at most %d (got %d)", MaxNumWorkers, jp.Scale.Max)
		}
		if d.IdleTimeout < 0 {
			add(joinPath(joinPath(path, "dynamic_allocator"), "idle_timeout"), "must be > 0")
		}
	}
	return errs
}

// ignoredPoolKeys warns about the RoadRunner keys of a jobs.pools entry
// that have no effect here (as ignoredWarnings does for jobs.pool).
func ignoredPoolKeys(jp JobsPool, path string) []*Error {
	var w []*Error
	warn := func(set bool, key, reason string) {
		if set {
			w = append(w, errAt(joinPath(path, key), 0, "%s", reason))
		}
	}
	warn(jp.Debug, "debug", "ignored: workers are long-lived (max_jobs: 1 replaces a worker after each job)")
	warn(jp.MaxQueueSize != 0, "max_queue_size", "ignored: a pipeline takes no job from its broker without a free slot, so nothing queues for workers")
	warn(jp.StreamTimeout != 0, "stream_timeout", "ignored: jobs have no streamed responses")
	return w
}
