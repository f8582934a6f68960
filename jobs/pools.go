package jobs

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/pipeline"
)

// ErrUnknownPool is wrapped by Start and Declare for a pipeline whose
// pool key names no pool of Config.Pools.
var ErrUnknownPool = errors.New("unknown worker pool")

// Pool is one worker pool the pipelines run on.
type Pool struct {
	// Executor runs the jobs of the pipelines on this pool. Required.
	Executor pipeline.Executor
	// Concurrency is the number of slots of a pipeline on this pool that
	// sets none (jobs.Declare without "concurrency"): normally the most
	// workers the pool may run. Values below 1 mean 1.
	Concurrency int
	// Pipelining is the pool's pipelining, passed to its pipelines (see
	// pipeline.Config.Pipelining). Values below 2 mean one at a time.
	Pipelining int
}

// pools returns cfg's pools: Config.Pools, or, when it is empty, one
// pool named config.DefaultPool made of Executor, DefaultConcurrency and
// Pipelining.
func (cfg Config) pools() map[string]Pool {
	if len(cfg.Pools) > 0 {
		return cfg.Pools
	}
	return map[string]Pool{config.DefaultPool: {
		Executor: cfg.Executor, Concurrency: cfg.DefaultConcurrency, Pipelining: cfg.Pipelining,
	}}
}

// poolFor returns the name and the pool p runs on (its pool key, or
// config.DefaultPool), or an error wrapping ErrUnknownPool.
func (m *Manager) poolFor(p config.Pipeline) (string, Pool, error) {
	name := cmp.Or(p.Pool, config.DefaultPool)
	pl, ok := m.pools[name]
	if !ok {
		return name, Pool{}, fmt.Errorf("jobs: pipeline %q: %w %q (pools: %s)", p.Name, ErrUnknownPool, name,
			strings.Join(slices.Sorted(maps.Keys(m.pools)), ", "))
	}
	if pl.Concurrency < 1 {
		pl.Concurrency = 1
	}
	return name, pl, nil
}

// PipelinePools returns the pool each pipeline runs on, by pipeline name.
func (m *Manager) PipelinePools() map[string]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]string, len(m.pipes))
	for name, e := range m.pipes {
		out[name] = e.pool
	}
	return out
}
