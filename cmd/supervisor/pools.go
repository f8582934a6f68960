package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/metrics"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/rpc"
)

// namedPool is one worker pool of the supervisor.
type namedPool struct {
	name string
	cfg  pool.Config
	p    *pool.Pool
	// concurrency is the slots of a pipeline on it that sets none.
	concurrency int
}

// poolSet is the supervisor's worker pools (config.Root.PoolNames), in
// name order. Its methods are safe for concurrent use once openPools
// returned.
type poolSet struct {
	pools []namedPool
	log   *slog.Logger
}

// openPools opens (without starting) one pool per name of
// root.PoolNames; observer returns the pool.Observer of each (nil for
// none). With more than one pool, every pool's log lines carry its name.
func openPools(root *config.Root, observer func(name string) pool.Observer, log *slog.Logger) (*poolSet, error) {
	names := root.PoolNames()
	s := &poolSet{log: log}
	for _, name := range names {
		cfg, _ := root.PoolConfigFor(name)
		cfg.Observer = observer(name)
		plog := log
		if len(names) > 1 {
			plog = log.With("pool", name)
		}
		p, err := pool.Open(cfg, plog)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", name, err)
		}
		s.pools = append(s.pools, namedPool{name: name, cfg: cfg, p: p, concurrency: root.DefaultConcurrency(name)})
	}
	return s, nil
}

// jobsPools returns the pools for jobs.Config.Pools, each with the
// concurrency its pipelines get unless they set their own
// (config.JobsPool.DefaultConcurrency).
func (s *poolSet) jobsPools() map[string]jobs.Pool {
	out := make(map[string]jobs.Pool, len(s.pools))
	for _, np := range s.pools {
		out[np.name] = jobs.Pool{Executor: np.p, Concurrency: np.concurrency, Pipelining: np.cfg.Pipelining}
	}
	return out
}

// workerCounts describes the pools' sizes for the startup log line.
func (s *poolSet) workerCounts() map[string]int {
	out := make(map[string]int, len(s.pools))
	for _, np := range s.pools {
		out[np.name] = np.cfg.NumWorkers
	}
	return out
}

// Start starts every pool at once and returns when each answered or
// failed; the first failure (naming its pool) is returned.
func (s *poolSet) Start(ctx context.Context) error {
	errs := make([]error, len(s.pools))
	var wg sync.WaitGroup
	for i, np := range s.pools {
		wg.Go(func() {
			if err := np.p.Start(ctx); err != nil {
				errs[i] = fmt.Errorf("pool %s: %w", np.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop stops every pool at once and waits for all of them.
func (s *poolSet) Stop(ctx context.Context) error {
	errs := make([]error, len(s.pools))
	var wg sync.WaitGroup
	for i, np := range s.pools {
		wg.Go(func() {
			if err := np.p.Stop(ctx); err != nil {
				errs[i] = fmt.Errorf("pool %s: %w", np.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Workers lists the workers of every pool, pool by pool.
func (s *poolSet) Workers() []pool.WorkerInfo {
	var out []pool.WorkerInfo
	for _, np := range s.pools {
		out = append(out, np.p.Workers()...)
	}
	return out
}

// alive returns nil when every pool has a worker that is ready or
// working, else an error naming the pools that have none.
func (s *poolSet) alive() error {
	var dead []string
	for _, np := range s.pools {
		if !slices.ContainsFunc(np.p.Workers(), func(w pool.WorkerInfo) bool { return w.State == "ready" || w.State == "working" }) {
			dead = append(dead, np.name)
		}
	}
	if dead == nil {
		return nil
	}
	if len(s.pools) == 1 {
		return errNoLiveWorker
	}
	return fmt.Errorf("%w: pool %s", errNoLiveWorker, strings.Join(dead, ", "))
}

// degraded returns the first pool.Degraded error, naming its pool when
// there are several.
func (s *poolSet) degraded() error {
	for _, np := range s.pools {
		if err := np.p.Degraded(); err != nil {
			if len(s.pools) == 1 {
				return err
			}
			return fmt.Errorf("pool %s: %w", np.name, err)
		}
	}
	return nil
}

// find returns the pool named name.
func (s *poolSet) find(name string) (namedPool, bool) {
	for _, np := range s.pools {
		if np.name == name {
			return np, true
		}
	}
	return namedPool{}, false
}

// names returns the pool names, sorted.
func (s *poolSet) names() []string {
	out := make([]string, len(s.pools))
	for i, np := range s.pools {
		out[i] = np.name
	}
	return out
}

// poolWorkers adapts the pools to rpc.Workers and rpc.PoolResetter.
// Resets are logged with their origin (jobs.OriginOf).
type poolWorkers struct {
	s   *poolSet
	log *slog.Logger
	// pipelines returns the pool of each pipeline (jobs.Manager.PipelinePools);
	// nil lists no pipeline.
	pipelines func() map[string]string
}

// Pools describes every pool with the pipelines that run on it.
func (w poolWorkers) Pools() []rpc.PoolInfo {
	byPool := map[string][]string{}
	if w.pipelines != nil {
		for pipe, pool := range w.pipelines() {
			byPool[pool] = append(byPool[pool], pipe)
		}
	}
	out := make([]rpc.PoolInfo, len(w.s.pools))
	for i, np := range w.s.pools {
		sz := np.p.Size()
		pipes := byPool[np.name]
		slices.Sort(pipes)
		out[i] = rpc.PoolInfo{Name: np.name, Min: sz.Min, Max: sz.Max, Size: sz.Target, Running: sz.Running,
			Waiting: sz.Waiting, ScaleUps: sz.Ups, ScaleDowns: sz.Downs, Pipelines: pipes}
	}
	return out
}

func (w poolWorkers) Workers() []rpc.WorkerInfo {
	var out []rpc.WorkerInfo
	for _, np := range w.s.pools {
		for _, x := range np.p.Workers() {
			out = append(out, rpc.WorkerInfo{Pid: x.Pid, State: x.State, Jobs: x.Jobs, RSS: x.RSS, Created: x.Created,
				CurrentJob: x.CurrentJob, CurrentJobSince: x.CurrentJobSince, Pool: np.name})
		}
	}
	return out
}

// Reset replaces every worker of every pool, the pools at once and each
// one worker at a time, logging the reset at info with its origin and
// its failure at error level.
func (w poolWorkers) Reset(ctx context.Context) error {
	origin := jobs.OriginOf(ctx).LogAttrs()
	w.log.Info("workers reset: replacing every worker", origin...)
	errs := make([]error, len(w.s.pools))
	var wg sync.WaitGroup
	for i, np := range w.s.pools {
		wg.Go(func() {
			if err := np.p.Reset(ctx); err != nil {
				errs[i] = err
				if len(w.s.pools) > 1 {
					errs[i] = fmt.Errorf("pool %s: %w", np.name, err)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		w.log.Error("workers reset failed", append(origin, "err", err)...)
		return err
	}
	w.log.Info("workers reset: done", origin...)
	return nil
}

// ResetPool replaces every worker of the pool named name, one at a time.
func (w poolWorkers) ResetPool(ctx context.Context, name string) error {
	np, ok := w.s.find(name)
	if !ok {
		return fmt.Errorf("%w %q (pools: %s)", rpc.ErrUnknownPool, name, strings.Join(w.s.names(), ", "))
	}
	origin := append(jobs.OriginOf(ctx).LogAttrs(), "pool", name)
	w.log.Info("workers reset: replacing every worker of the pool", origin...)
	if err := np.p.Reset(ctx); err != nil {
		w.log.Error("workers reset failed", append(origin, "err", err)...)
		return err
	}
	w.log.Info("workers reset: done", origin...)
	return nil
}

// states returns every pool's size and workers for the metrics.
func (s *poolSet) states() []metrics.PoolState {
	out := make([]metrics.PoolState, len(s.pools))
	for i, np := range s.pools {
		out[i] = metrics.PoolState{Name: np.name, Size: np.p.Size(), Workers: np.p.Workers()}
	}
	return out
}
