// Package jobs runs the set of pipelines of a supervisor: it creates their
// drivers (through a Factory supplied by cmd), runs each pipeline's loop,
// and serves the jobs.* control plane: Push, Pause, Resume, List, Declare,
// Destroy, Stat, plus Ready for /ready and Stop for shutdown.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/pipeline"
	"github.com/pipevisor/pipevisor/tracing"
)

// Driver is what a Factory returns for one pipeline: a consumer that can
// also publish. It may implement consumer.Pauser, Stater and Checker.
type Driver interface {
	consumer.Consumer
	consumer.Publisher
}

// Factory constructs the driver of one pipeline from its configuration. It
// is supplied by cmd (the only place that knows every driver). The Manager
// owns the returned driver and closes it. p.Concurrency is the number of
// slots the pipeline will have (Config.DefaultConcurrency filled in); a
// driver may hold up to its own prefetch of deliveries ahead of them.
type Factory func(ctx context.Context, p config.Pipeline) (Driver, error)

// CloseTimeout bounds closing a driver when the caller's ctx is already
// done by the time the pipelines have stopped.
const CloseTimeout = 5 * time.Second

// Config configures a Manager.
type Config struct {
	// Factory builds each pipeline's driver. Required.
	Factory Factory
	// Executor runs the jobs of every pipeline (the worker pool) when
	// Pools is empty. Required then.
	Executor pipeline.Executor
	// Pools are the worker pools by name; a pipeline runs on the one
	// its Pool names (config.DefaultPool when empty). When empty,
	// Executor, DefaultConcurrency and Pipelining are the one pool,
	// config.DefaultPool.
	Pools map[string]Pool
	// Logger receives the pipelines' log lines; nil discards them.
	Logger *slog.Logger
	// Pipelines are the pipelines declared in the configuration file, by
	// name (config.Jobs.Pipelines). Start creates their drivers.
	Pipelines map[string]config.Pipeline
	// DefaultConcurrency is used for a pipeline whose Concurrency is 0
	// (jobs.Declare without "concurrency"): normally the pool size.
	// Values below 1 mean 1.
	DefaultConcurrency int
	// Pipelining is the pool's pipelining (jobs.pool.pipelining), passed
	// to every pipeline: the most jobs one slot hands to a worker at once
	// (see pipeline.Config.Pipelining). Values below 2 mean one at a time.
	Pipelining int
	// SettleTimeout bounds each Settle call (see pipeline.Config).
	SettleTimeout time.Duration
	// Observer, when not nil, is told every job's fate (metrics).
	Observer pipeline.Observer
	// Tracer, when not nil, makes a span for every push, run and
	// settlement, and carries the traceparent in the jobs' headers.
	Tracer *tracing.Tracer
}

type managerState uint8

const (
	stateNew managerState = iota
	stateStarting
	stateStarted
	stateStopped
)

// entry is one pipeline: its configuration, driver and loop.
type entry struct {
	cfg  config.Pipeline
	drv  Driver
	pl   *pipeline.Pipeline
	pool string // the name of the pool it runs on

	// running and done are guarded by Manager.mu.
	running bool
	done    chan struct{} // closed when Run returned; nil until running
}

// Manager holds the running pipelines by name. All methods are safe for
// concurrent use. Every goroutine it starts is awaited by Stop (or by the
// Destroy that removed its pipeline).
type Manager struct {
	cfg   Config
	log   *slog.Logger
	pools map[string]Pool // cfg.pools()

	runCtx    context.Context // parent of every pipeline's Run
	cancelRun context.CancelFunc
	runs      sync.WaitGroup // one per running pipeline

	mu      sync.RWMutex
	state   managerState
	pipes   map[string]*entry
	pending map[string]struct{} // names whose Declare is creating a driver
	consume map[string]bool     // jobs.consume, set by Start; read by Declare
}

// New returns a manager for cfg. Nothing runs until Start.
func New(cfg Config) *Manager {
	if cfg.DefaultConcurrency < 1 {
		cfg.DefaultConcurrency = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:       cfg,
		log:       log,
		pools:     cfg.pools(),
		runCtx:    ctx,
		cancelRun: cancel,
		pipes:     make(map[string]*entry),
		pending:   make(map[string]struct{}),
	}
}

// Start creates the driver of every configured pipeline and starts
// consuming the pipelines named in consume (jobs.consume). The others
// accept pushes but are not consumed until Resume. A name in consume that
// is not configured is remembered, as in RoadRunner: a pipeline of that
// name created later by Declare starts consuming at once. When a driver
// cannot be created, the drivers created so far are closed and the error
// is returned; Start may then be called again.
func (m *Manager) Start(ctx context.Context, consume []string) error {
	m.mu.Lock()
	switch m.state {
	case stateStopped:
		m.mu.Unlock()
		return ErrStopped
	case stateStarting, stateStarted:
		m.mu.Unlock()
		return ErrStarted
	}
	m.state = stateStarting
	m.mu.Unlock()

	names := slices.Sorted(maps.Keys(m.cfg.Pipelines))
	created := make([]*entry, 0, len(names))
	var err error
	for _, name := range names {
		p := m.cfg.Pipelines[name]
		p.Name = name
		var poolName string
		var pool Pool
		if poolName, pool, err = m.poolFor(p); err != nil {
			break
		}
		p.Concurrency = concurrency(p.Concurrency, pool)
		var drv Driver
		drv, err = m.cfg.Factory(ctx, p)
		if err != nil {
			err = fmt.Errorf("jobs: pipeline %q: %w", name, err)
			break
		}
		e := m.newEntry(p, drv, poolName, pool)
		created = append(created, e)
		// A pipeline that is not consumed must not hold messages either:
		// pause its driver (an AMQP consumer would otherwise prefetch).
		if !slices.Contains(consume, name) {
			if err = e.pl.Pause(ctx); err != nil {
				err = fmt.Errorf("jobs: pipeline %q: %w", name, err)
				break
			}
		}
	}

	m.mu.Lock()
	if err != nil || m.state == stateStopped {
		if m.state != stateStopped {
			m.state = stateNew
		} else {
			err = ErrStopped
		}
		m.mu.Unlock()
		return errors.Join(err, closeDrivers(ctx, created))
	}
	for _, e := range created {
		m.pipes[e.cfg.Name] = e
	}
	m.state = stateStarted
	m.consume = make(map[string]bool, len(consume))
	var consumed, idle []string
	for _, name := range consume {
		m.consume[name] = true
		if e := m.pipes[name]; e != nil {
			m.startLocked(e)
		}
	}
	for _, e := range created {
		if e.running {
			consumed = append(consumed, e.cfg.Name)
		} else {
			idle = append(idle, e.cfg.Name)
		}
	}
	m.mu.Unlock()
	m.log.Info("pipelines declared", append([]any{"consumed", consumed, "paused", idle}, OriginOf(ctx).LogAttrs()...)...)
	return nil
}

// concurrency returns the number of slots of a pipeline configured with
// conc that runs on pool: conc, or the pool's Concurrency when conc is
// below 1.
func concurrency(conc int, pool Pool) int {
	if conc < 1 {
		return pool.Concurrency
	}
	return conc
}

// newEntry wraps a driver in a pipeline that runs on pool.
func (m *Manager) newEntry(p config.Pipeline, drv Driver, poolName string, pool Pool) *entry {
	pl := pipeline.New(pipeline.Config{
		Name:          p.Name,
		Driver:        p.Driver,
		Priority:      p.Priority,
		Concurrency:   concurrency(p.Concurrency, pool),
		Pipelining:    pool.Pipelining,
		Retry:         p.Retry,
		SettleTimeout: m.cfg.SettleTimeout,
		Observer:      m.cfg.Observer,
		Tracer:        m.cfg.Tracer,
	}, drv, pool.Executor, m.log)
	return &entry{cfg: p, drv: drv, pl: pl, pool: poolName}
}

// startLocked starts e's loop unless it runs already. Caller holds m.mu
// (write) and the manager is started, so Stop cannot be waiting on runs.
func (m *Manager) startLocked(e *entry) {
	if e.running {
		return
	}
	e.running = true
	e.done = make(chan struct{})
	done := e.done
	m.runs.Go(func() {
		defer close(done)
		// ErrStopped: Stop or Destroy won the race against this start.
		if err := e.pl.Run(m.runCtx); err != nil && !errors.Is(err, pipeline.ErrStopped) {
			m.log.Error("pipeline stopped consuming", "pipeline", e.cfg.Name, "err", err)
		}
	})
}

// lookupLocked returns the entries for names, in order and without
// duplicates, or an error wrapping
// consumer.ErrUnknownPipeline naming every unknown one. Caller holds m.mu.
func (m *Manager) lookupLocked(names []string) ([]*entry, error) {
	if m.state == stateStopped {
		return nil, ErrStopped
	}
	out := make([]*entry, 0, len(names))
	var unknown []string
	for _, name := range names {
		e, ok := m.pipes[name]
		switch {
		case !ok:
			unknown = append(unknown, name)
		case !slices.Contains(out, e):
			out = append(out, e)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("jobs: %w", m.unknownLocked(unknown))
	}
	return out, nil
}

// unknownLocked returns the error for the unknown names, listing the
// pipelines that exist. Caller holds m.mu.
func (m *Manager) unknownLocked(names []string) *UnknownPipelineError {
	return &UnknownPipelineError{Names: names, Known: slices.Sorted(maps.Keys(m.pipes))}
}

// Pause stops consuming the named pipelines; pushing to them still works
// and running jobs finish. All names must exist (else nothing is paused and
// the error wraps consumer.ErrUnknownPipeline). Pausing a paused pipeline
// is a no-op. The errors of individual pipelines are joined.
func (m *Manager) Pause(ctx context.Context, names []string) error {
	m.mu.RLock()
	es, err := m.lookupLocked(names)
	m.mu.RUnlock()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range es {
		if err := e.pl.Pause(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	m.logAction(ctx, "pipelines paused", es, errs)
	return errors.Join(errs...)
}

// logAction logs a control-plane action on es at info level with its
// origin (see OriginOf), or at error level with the errors when some
// pipelines failed.
func (m *Manager) logAction(ctx context.Context, msg string, es []*entry, errs []error) {
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.cfg.Name
	}
	args := append([]any{"pipelines", names}, OriginOf(ctx).LogAttrs()...)
	if err := errors.Join(errs...); err != nil {
		m.log.Error(msg+" with errors", append(args, "err", err)...)
		return
	}
	m.log.Info(msg, args...)
}

// Resume undoes Pause; for a pipeline that is declared but was not in the
// consume list it starts consuming. All names must exist (else nothing is
// resumed and the error wraps consumer.ErrUnknownPipeline).
func (m *Manager) Resume(ctx context.Context, names []string) error {
	m.mu.RLock()
	es, err := m.lookupLocked(names)
	m.mu.RUnlock()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range es {
		if err := e.pl.Resume(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		m.mu.Lock()
		// The pipeline may have been destroyed meanwhile: then it is
		// stopped and must not be started.
		if m.state == stateStarted && m.pipes[e.cfg.Name] == e {
			m.startLocked(e)
		}
		m.mu.Unlock()
	}
	m.logAction(ctx, "pipelines resumed", es, errs)
	return errors.Join(errs...)
}

// List returns the names of all pipelines, sorted.
func (m *Manager) List() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Sorted(maps.Keys(m.pipes))
}

// Declare creates a pipeline at runtime from the same keys a pipeline has
// in .rr.yaml (flattened as jobs.Declare sends them; see
// config.ParseDeclare, which validates them). Keys accepted without effect
// are logged at debug level, the driver config's warnings at warn level.
// As in RoadRunner, the pipeline starts consuming at once only when its
// name is in jobs.consume (the consume list given to Start); otherwise it
// accepts pushes and is consumed from the first Resume. A name in use is
// an error wrapping ErrPipelineExists.
func (m *Manager) Declare(ctx context.Context, opts map[string]string) error {
	d, err := config.ParseDeclare(opts)
	if err != nil {
		return fmt.Errorf("jobs: declare: %w", err)
	}
	p := d.Pipeline
	for _, k := range d.Ignored {
		m.log.Debug("declare: key has no effect", "pipeline", p.Name, "key", k.Key, "reason", k.Reason)
	}
	for _, w := range p.Warnings {
		m.log.Warn("declare: "+w.Reason, "pipeline", p.Name, "key", w.Path)
	}
	poolName, pool, err := m.poolFor(p)
	if err != nil {
		return fmt.Errorf("jobs: declare: %w", err)
	}
	p.Concurrency = concurrency(p.Concurrency, pool)
	m.mu.Lock()
	switch {
	case m.state == stateStopped:
		m.mu.Unlock()
		return ErrStopped
	case m.state != stateStarted:
		m.mu.Unlock()
		return ErrNotStarted
	}
	if _, ok := m.pipes[p.Name]; ok {
		m.mu.Unlock()
		return fmt.Errorf("jobs: declare %q: %w", p.Name, ErrPipelineExists)
	}
	if _, ok := m.pending[p.Name]; ok {
		m.mu.Unlock()
		return fmt.Errorf("jobs: declare %q: %w", p.Name, ErrPipelineExists)
	}
	m.pending[p.Name] = struct{}{}
	m.mu.Unlock()

	drv, err := m.cfg.Factory(ctx, p)
	var e *entry
	m.mu.RLock()
	run := m.consume[p.Name]
	m.mu.RUnlock()
	if err == nil {
		e = m.newEntry(p, drv, poolName, pool)
		if !run {
			// Not consumed yet: the driver must not hold messages either
			// (an AMQP consumer would otherwise prefetch).
			err = e.pl.Pause(ctx)
			if err != nil {
				err = errors.Join(err, closeDrivers(ctx, []*entry{e}))
			}
		}
	}

	m.mu.Lock()
	delete(m.pending, p.Name)
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("jobs: declare %q: %w", p.Name, err)
	}
	if m.state != stateStarted {
		m.mu.Unlock()
		return errors.Join(ErrStopped, closeDrivers(ctx, []*entry{e}))
	}
	m.pipes[p.Name] = e
	if run {
		m.startLocked(e)
	}
	m.mu.Unlock()
	m.log.Info("pipeline declared", append([]any{"pipeline", p.Name, "driver", p.Driver, "consuming", run}, OriginOf(ctx).LogAttrs()...)...)
	return nil
}

// Destroy removes the named pipelines: it stops consuming them at once
// (pushes to them fail from then on), lets their running jobs finish until
// ctx is done (then interrupts them: they go back to the broker), and
// closes their drivers, which return unstarted jobs to the broker. All
// names must exist (else nothing is destroyed and the error wraps
// consumer.ErrUnknownPipeline). It returns the names destroyed, with the
// joined errors of closing their drivers.
func (m *Manager) Destroy(ctx context.Context, names []string) ([]string, error) {
	m.mu.Lock()
	es, err := m.lookupLocked(names)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	for _, e := range es {
		delete(m.pipes, e.cfg.Name)
	}
	m.mu.Unlock()

	err = m.shutdown(ctx, es)
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.cfg.Name
	}
	var errs []error
	if err != nil {
		errs = []error{err}
	}
	m.logAction(ctx, "pipelines destroyed", es, errs)
	return out, err
}

// shutdown stops the pipelines of es in parallel, waits for their loops and
// closes their drivers. The entries must no longer be reachable from
// m.pipes, so nobody starts them again.
func (m *Manager) shutdown(ctx context.Context, es []*entry) error {
	var wg sync.WaitGroup
	for _, e := range es {
		wg.Go(func() {
			_ = e.pl.Stop(ctx) // always nil; waits for the loop's goroutines
			m.mu.RLock()
			done := e.done
			m.mu.RUnlock()
			if done != nil {
				<-done
			}
		})
	}
	wg.Wait()
	return closeDrivers(ctx, es)
}

// closeDrivers closes the drivers of es in parallel. When ctx is already
// done, each gets CloseTimeout.
func closeDrivers(ctx context.Context, es []*entry) error {
	if len(es) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), CloseTimeout)
		defer cancel()
	}
	errs := make([]error, len(es))
	var wg sync.WaitGroup
	for i, e := range es {
		wg.Go(func() {
			if err := e.drv.Close(ctx); err != nil {
				errs[i] = fmt.Errorf("jobs: close pipeline %q: %w", e.cfg.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stat returns the state of every pipeline, sorted by name.
func (m *Manager) Stat(ctx context.Context) ([]consumer.Stat, error) {
	m.mu.RLock()
	if m.state == stateStopped {
		m.mu.RUnlock()
		return nil, ErrStopped
	}
	es := make([]*entry, 0, len(m.pipes))
	for _, name := range slices.Sorted(maps.Keys(m.pipes)) {
		es = append(es, m.pipes[name])
	}
	m.mu.RUnlock()
	out := make([]consumer.Stat, len(es))
	for i, e := range es {
		out[i] = e.pl.Stat(ctx)
	}
	return out, nil
}

// Ready returns nil when the manager is started and every pipeline being
// consumed is receiving and its driver (when it implements
// consumer.Checker) is healthy. A paused pipeline is not consuming, so it
// is reported (as /ready must: "every consumed pipeline connected and
// consuming"); pipelines declared but never started do not count.
// When jobs.consume names pipelines but none of them exists (the last one
// was destroyed, or none is declared yet) it returns ErrNothingConsumed:
// nothing is being consumed. An empty jobs.consume (a producer-only
// supervisor) needs no pipeline.
// Otherwise the joined errors say which pipeline is down and why.
func (m *Manager) Ready() error {
	m.mu.RLock()
	switch m.state {
	case stateStopped:
		m.mu.RUnlock()
		return ErrStopped
	case stateNew, stateStarting:
		m.mu.RUnlock()
		return ErrNotStarted
	}
	var es []*entry
	for _, name := range slices.Sorted(maps.Keys(m.pipes)) {
		if e := m.pipes[name]; e.running {
			es = append(es, e)
		}
	}
	wanted := slices.Sorted(maps.Keys(m.consume))
	m.mu.RUnlock()
	if len(es) == 0 && len(wanted) > 0 {
		return fmt.Errorf("%w (jobs.consume: %s)", ErrNothingConsumed, strings.Join(wanted, ", "))
	}
	var errs []error
	for _, e := range es {
		if err := e.pl.Check(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop shuts every pipeline down in parallel: each stops receiving, its
// running jobs finish until ctx is done and are then interrupted and handed
// back to the broker; then every driver is closed. Stop returns once every
// goroutine the manager started has exited, with the joined errors of
// closing the drivers. Later calls return nil at once; every other method
// returns ErrStopped afterwards.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.state == stateStopped {
		m.mu.Unlock()
		return nil
	}
	m.state = stateStopped
	es := make([]*entry, 0, len(m.pipes))
	for _, e := range m.pipes {
		es = append(es, e)
	}
	clear(m.pipes)
	m.mu.Unlock()

	err := m.shutdown(ctx, es)
	m.runs.Wait()
	m.cancelRun()
	return err
}
