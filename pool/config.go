package pool

import (
	"runtime"
	"time"
)

// Config describes one pool of worker processes. The yaml tags are the
// RoadRunner key names under jobs.pool in .rr.yaml.
type Config struct {
	// Command starts one worker. In YAML a string is split on whitespace;
	// a list is taken as is. Overrides server.command when set.
	Command []string `yaml:"command"`
	// Env is added to the environment of every worker, keys upper-cased.
	Env map[string]string `yaml:"-"`
	// NumWorkers is the number of processes (default: number of CPUs).
	NumWorkers int `yaml:"num_workers"`
	// MaxJobs recycles a worker after this many jobs; 0 = never.
	MaxJobs uint64 `yaml:"max_jobs"`
	// AllocateTimeout bounds the wait for a free worker in Exec and the pid
	// handshake of a new worker (default 60s).
	AllocateTimeout time.Duration `yaml:"allocate_timeout"`
	// DestroyTimeout bounds the graceful stop of a worker before SIGKILL
	// (default 60s).
	DestroyTimeout time.Duration `yaml:"destroy_timeout"`
	// ResetTimeout bounds a rolling reset of the whole pool (default 60s).
	ResetTimeout time.Duration `yaml:"reset_timeout"`
	// Pipelining is the most jobs ExecBatch writes to one worker ahead of
	// their replies (0 or 1: one job at a time). Jobs wait behind the
	// one running on the same worker, so set it only for short jobs.
	Pipelining int `yaml:"pipelining"`
	// Supervisor holds the limits checked on every tick.
	Supervisor Supervisor `yaml:"supervisor"`
	// Observer, when not nil, is told why each worker left (metrics);
	// one that also implements ScaleObserver is told each scaling step.
	Observer Observer `yaml:"-"`
	// Scale lets the pool grow past NumWorkers under load and shrink back
	// when idle; off when Scale.Max <= NumWorkers. NumWorkers is then the
	// minimum, the size the pool starts with.
	Scale Scale `yaml:"-"`

	// pollStdout makes workers' stdout go through Go's poller, the
	// fallback when /proc/self/fd cannot be opened (tests).
	pollStdout bool
	// steadyAfter overrides steadyUptime (tests).
	steadyAfter time.Duration
	// slowHandshake overrides defaultSlowHandshake (tests).
	slowHandshake time.Duration
}

// Supervisor holds the per-worker limits. Zero means no limit.
type Supervisor struct {
	// WatchTick is how often limits are checked (default 5s; 1s minimum
	// is not enforced so tests can tick faster).
	WatchTick time.Duration `yaml:"watch_tick"`
	// TTL is the maximum lifetime of a worker.
	TTL time.Duration `yaml:"ttl"`
	// IdleTTL retires a worker idle for longer than this.
	IdleTTL time.Duration `yaml:"idle_ttl"`
	// ExecTTL is the maximum duration of one job; past it the worker is
	// killed and the job fails with ErrExecTimeout.
	ExecTTL time.Duration `yaml:"exec_ttl"`
	// MaxWorkerMemory is the RSS limit in megabytes, for the worker process
	// and every process below it together (a `sh -c` wrapper's child, a
	// forked child).
	MaxWorkerMemory uint64 `yaml:"max_worker_memory"`
}

// Scale is how a pool sizes itself between NumWorkers and Max. On every
// WatchTick the pool grows by up to SpawnRate workers when Exec calls wait
// for a free worker (for longer than WaitThreshold, when set), never past
// Max, and retires the workers idle for longer than IdleTimeout, never
// going below NumWorkers and never stopping a worker that runs a job.
type Scale struct {
	// Max is the largest size; <= NumWorkers disables scaling.
	Max int
	// SpawnRate is the most workers added per tick (default
	// DefaultSpawnRate).
	SpawnRate int
	// IdleTimeout is how long an extra worker may sit idle before it is
	// retired (default DefaultScaleIdle).
	IdleTimeout time.Duration
	// WaitThreshold, when > 0, makes the pool grow only when the oldest
	// waiting Exec has waited this long; 0: any waiting Exec.
	WaitThreshold time.Duration
}

// Scaling defaults (RoadRunner's dynamic_allocator defaults).
const (
	DefaultSpawnRate = 5
	DefaultScaleIdle = time.Minute
)

// Defaults used by New for zero Config fields.
const (
	DefaultTimeout   = 60 * time.Second // allocate_timeout, destroy_timeout, reset_timeout
	DefaultWatchTick = 5 * time.Second
)

// withDefaults returns c with zero durations and NumWorkers filled in.
func (c Config) withDefaults() Config {
	if c.NumWorkers <= 0 {
		c.NumWorkers = runtime.NumCPU()
	}
	for _, d := range []*time.Duration{&c.AllocateTimeout, &c.DestroyTimeout, &c.ResetTimeout} {
		if *d <= 0 {
			*d = DefaultTimeout
		}
	}
	if c.Supervisor.WatchTick <= 0 {
		c.Supervisor.WatchTick = DefaultWatchTick
	}
	if c.Scale.Max > c.NumWorkers {
		if c.Scale.SpawnRate <= 0 {
			c.Scale.SpawnRate = DefaultSpawnRate
		}
		if c.Scale.IdleTimeout <= 0 {
			c.Scale.IdleTimeout = DefaultScaleIdle
		}
	} else {
		c.Scale = Scale{}
	}
	return c
}
