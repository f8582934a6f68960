// Package pipeline runs one pipeline: it receives deliveries from a
// consumer.Consumer, executes each on an Executor (the worker pool), decides
// the fate of the job with the one outcome table (outcomeFor) and settles it
// on the broker.
//
// Concurrency is bounded by Config.Concurrency goroutines, each running
// receive -> exec -> settle in a loop, so no job starts without a free slot
// and there is no goroutine per job. A slot calls Receive only when it is
// free; a driver may hold deliveries ahead of the slots (amqp: up to its
// prefetch, as RoadRunner does), so that a freed slot takes its next job
// without a broker round trip. What the driver holds is not running: Stat
// counts as Active only jobs a slot took, and Pause and Stop hand the rest
// back through the driver (consumer.Pauser, Close) without spending an
// attempt.
package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
	"github.com/pipevisor/pipevisor/tracing"
)

// Executor runs jobs on workers. *pool.Pool satisfies it.
type Executor interface {
	// Run runs the jobs in pls (one, or up to Config.Pipelining written
	// to one worker ahead of their replies) and sets res[i] to what job i
	// came to, At included (see pool.Run for the errors), returning once
	// every job has its result and no worker is held. A job not sent to a worker when
	// send ends is not sent (its error wraps context.Cause(send)); Run
	// must return once ctx is done (the pool kills the worker);
	// context.Cause(ctx) tells why. pls is only valid until Run returns:
	// the pipeline reuses its memory.
	Run(ctx, send context.Context, pls []frame.Payload, res []pool.Result)
}

// Fate is what an Observer learns about one settled job.
type Fate struct {
	// Action is the outcome the job was settled with.
	Action consumer.Action
	// Took is the time from receive to settle.
	Took time.Duration
	// Exec is the time the job spent on a worker (reply parsing
	// included). It is 0 when Action is Release: the job reached no worker
	// or was interrupted by shutdown.
	Exec time.Duration
	// Failed is true when the execution failed on the worker: an ERROR
	// frame, a crash, exec_ttl, a reply that is not a valid reply.
	Failed bool
	// Wait is the time from the job's enqueue (Delivery.Enqueued: its
	// push, or the end of its delay) to the start of its run; -1 when the
	// driver does not tell the enqueue time or the job did not run.
	Wait time.Duration
}

// Observer is told the fate of every job once it is settled. It is called
// from the pipeline's goroutines and must be cheap and safe for concurrent
// use.
type Observer interface {
	Observe(pipeline string, f Fate)
}

// DefaultSettleTimeout bounds one Settle call when Config.SettleTimeout is 0.
const DefaultSettleTimeout = 30 * time.Second

// Config configures one pipeline.
type Config struct {
	// Name of the pipeline, as in jobs.pipelines.<name>.
	Name string
	// Driver, Queue and Priority are reported by Stat when the consumer
	// does not implement consumer.Stater (or leaves them empty).
	Driver   string
	Queue    string
	Priority int64
	// Concurrency is the number of slots; values below 1 mean 1. Each
	// slot has one job in flight, or up to Pipelining.
	Concurrency int
	// Pipelining is the most jobs a slot takes at once and hands to one
	// worker, written ahead of their replies (jobs.pool.pipelining). It
	// applies when the consumer is a consumer.ReadyReceiver; values below
	// 2 mean one job at a time.
	Pipelining int
	// Retry is the retry policy; zero fields take their defaults
	// (retry.Policy.WithDefaults).
	Retry retry.Policy
	// SettleTimeout bounds each Settle call (default DefaultSettleTimeout).
	// Settling is not cancelled by Stop.
	SettleTimeout time.Duration
	// Observer, when not nil, is told every job's fate (metrics).
	Observer Observer
	// Rand returns a uniform value in [0, 1) for the backoff jitter
	// (default math/rand/v2.Float64). Tests inject a fixed source.
	Rand func() float64
	// Tracer, when not nil, gives each job a run span and a settle span
	// (children of the trace its traceparent header names).
	Tracer *tracing.Tracer
}

type state uint8

const (
	stateIdle state = iota
	stateRunning
	stateStopped
)

// Pipeline is one running pipeline. All methods are safe for concurrent
// use. A Pipeline runs once: after Stop it cannot be started again.
type Pipeline struct {
	cfg Config
	c   consumer.Consumer
	ex  Executor
	log *slog.Logger

	ctl sync.Mutex // serialises Pause, Resume and Stop

	mu         sync.Mutex
	state      state
	paused     bool
	wake       chan struct{} // closed when a pause ends (resume or stop)
	recvCtx    context.Context
	recvCancel context.CancelCauseFunc
	workCancel context.CancelCauseFunc
	done       chan struct{} // closed when Run's goroutines have all exited
	recvErr    error         // last Receive failure, nil once Receive works again
	recvGen    uint64        // bumped by every setRecvErr
	closedErr  error         // the consumer was closed under a running pipeline

	stopFlag atomic.Bool // set with state = stateStopped, read per job
	active   atomic.Int64
	acked    atomic.Uint64
	retried  atomic.Uint64
	requeued atomic.Uint64
	dead     atomic.Uint64
}

// New returns a pipeline that consumes from c and executes on ex. It does
// not start anything: call Run. The pipeline never closes c; its owner does,
// after Stop returned.
func New(cfg Config, c consumer.Consumer, ex Executor, log *slog.Logger) *Pipeline {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	cfg.Retry = cfg.Retry.WithDefaults()
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = DefaultSettleTimeout
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{
		cfg:  cfg,
		c:    c,
		ex:   ex,
		log:  log.With("pipeline", cfg.Name),
		wake: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// Name returns the pipeline name.
func (p *Pipeline) Name() string { return p.cfg.Name }

// Run starts Config.Concurrency loops of receive -> exec -> settle and
// blocks until they have all exited: after Stop (then it returns nil), when
// ctx is done (running jobs are interrupted at once, as if Stop's grace
// period had run out; it returns nil) or when the consumer was closed under
// it (an error wrapping consumer.ErrClosed). Run returns ErrStopped after
// Stop and ErrRunning when it is already running. A paused pipeline (Pause
// before Run) starts without receiving until Resume.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	switch p.state {
	case stateStopped:
		p.mu.Unlock()
		return ErrStopped
	case stateRunning:
		p.mu.Unlock()
		return ErrRunning
	}
	p.state = stateRunning
	workCtx, workCancel := context.WithCancelCause(context.WithoutCancel(ctx))
	p.workCancel = workCancel
	p.mu.Unlock()
	defer workCancel(ErrShutdown)

	// ctx done means shut down now: stop receiving and interrupt the jobs.
	stopOnDone := context.AfterFunc(ctx, func() {
		p.beginStop()
		workCancel(ErrShutdown)
	})
	defer stopOnDone()

	var wg sync.WaitGroup
	for range p.cfg.Concurrency {
		wg.Go(func() { p.loop(workCtx) })
	}
	wg.Wait()

	p.mu.Lock()
	closedErr := p.closedErr
	p.state = stateStopped
	p.stopFlag.Store(true)
	p.mu.Unlock()
	close(p.done)
	if closedErr != nil {
		// consumerClosed records it only while the pipeline was not
		// stopping: the consumer was closed under a running pipeline.
		return fmt.Errorf("pipeline %s: %w", p.cfg.Name, closedErr)
	}
	return nil
}

// Stop stops receiving, lets the running jobs finish until ctx is done,
// then cancels their context with cause ErrShutdown: the pool kills those
// workers and the jobs are released to the broker without spending an
// attempt. Stop returns once every goroutine of Run has exited (at once if
// Run was never called; a later Run returns ErrStopped). It is idempotent
// and always returns nil; the error result is there for callers that
// compose shutdown functions.
func (p *Pipeline) Stop(ctx context.Context) error {
	p.ctl.Lock()
	defer p.ctl.Unlock()
	wasRunning := p.beginStop()
	if !wasRunning {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	p.log.WarnContext(ctx, "grace period over, interrupting running jobs",
		"active", p.active.Load())
	p.mu.Lock()
	cancel := p.workCancel
	p.mu.Unlock()
	cancel(ErrShutdown)
	<-p.done
	return nil
}

// beginStop marks the pipeline stopped and interrupts every Receive. It
// reports whether Run had been started (and may still be running).
func (p *Pipeline) beginStop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	started := p.workCancel != nil
	if p.state == stateStopped {
		return started
	}
	p.state = stateStopped
	p.stopFlag.Store(true)
	if p.recvCancel != nil {
		p.recvCancel(ErrShutdown)
		p.recvCtx, p.recvCancel = nil, nil
	}
	if p.paused {
		p.paused = false
		close(p.wake)
	}
	return started
}

// Pause stops taking new jobs; running jobs go on. When the consumer
// implements consumer.Pauser it is paused too (so a broker can take back
// prefetched messages). Pause is idempotent and returns ErrStopped after
// Stop.
func (p *Pipeline) Pause(ctx context.Context) error {
	p.ctl.Lock()
	defer p.ctl.Unlock()
	p.mu.Lock()
	if p.state == stateStopped {
		p.mu.Unlock()
		return ErrStopped
	}
	if p.paused {
		p.mu.Unlock()
		return nil
	}
	p.paused = true
	p.wake = make(chan struct{})
	if p.recvCancel != nil {
		p.recvCancel(ErrPaused)
		p.recvCtx, p.recvCancel = nil, nil
	}
	p.mu.Unlock()
	if ps, ok := p.c.(consumer.Pauser); ok {
		if err := ps.Pause(ctx); err != nil {
			return fmt.Errorf("pipeline %s: pause driver: %w", p.cfg.Name, err)
		}
	}
	return nil
}

// Resume undoes Pause. It is idempotent and returns ErrStopped after Stop.
// When the driver fails to resume, the pipeline stays paused and the error
// is returned.
func (p *Pipeline) Resume(ctx context.Context) error {
	p.ctl.Lock()
	defer p.ctl.Unlock()
	p.mu.Lock()
	if p.state == stateStopped {
		p.mu.Unlock()
		return ErrStopped
	}
	if !p.paused {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	if ps, ok := p.c.(consumer.Pauser); ok {
		if err := ps.Resume(ctx); err != nil {
			return fmt.Errorf("pipeline %s: resume driver: %w", p.cfg.Name, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateStopped && p.paused {
		p.paused = false
		close(p.wake)
	}
	return nil
}

// Paused reports whether the pipeline is paused.
func (p *Pipeline) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Check returns nil while the pipeline is running, not paused, receiving
// without errors and its driver (when it implements consumer.Checker)
// reports healthy. Otherwise the error says why.
func (p *Pipeline) Check() error {
	p.mu.Lock()
	st, paused, recvErr, closedErr := p.state, p.paused, p.recvErr, p.closedErr
	p.mu.Unlock()
	switch {
	case closedErr != nil:
		return fmt.Errorf("pipeline %s: %w", p.cfg.Name, closedErr)
	case st == stateIdle:
		return fmt.Errorf("pipeline %s: not started (resume it to consume)", p.cfg.Name)
	case st == stateStopped:
		return fmt.Errorf("pipeline %s: %w", p.cfg.Name, ErrStopped)
	case paused:
		return fmt.Errorf("pipeline %s: %w", p.cfg.Name, ErrPaused)
	case recvErr != nil:
		return fmt.Errorf("pipeline %s: receive: %w", p.cfg.Name, recvErr)
	}
	if ch, ok := p.c.(consumer.Checker); ok {
		if err := ch.Check(); err != nil {
			return fmt.Errorf("pipeline %s: driver: %w", p.cfg.Name, err)
		}
	}
	return nil
}

// Stat returns the pipeline's counters and active jobs, merged with the
// driver's numbers (Ready, Delayed, Reserved, Queue) when it implements
// consumer.Stater. Numbers the driver cannot tell are -1. Consuming is true
// only when Check would return nil; Error then is empty.
func (p *Pipeline) Stat(ctx context.Context) consumer.Stat {
	s := consumer.Stat{
		Pipeline:  p.cfg.Name,
		Driver:    p.cfg.Driver,
		Queue:     p.cfg.Queue,
		Priority:  p.cfg.Priority,
		Ready:     -1,
		Delayed:   -1,
		OldestAge: -1,
	}
	if r, ok := p.c.(consumer.OldestReadyReporter); ok {
		s.OldestAge = 0
		if at, ok := r.OldestReady(); ok {
			s.OldestAge = max(time.Since(at), 0)
		}
	}
	if st, ok := p.c.(consumer.Stater); ok {
		ds, err := st.Stat(ctx)
		if err != nil {
			s.Error = fmt.Sprintf("driver stat: %v", err)
		} else {
			s.Ready, s.Delayed, s.Reserved = ds.Ready, ds.Delayed, ds.Reserved
			if ds.Driver != "" {
				s.Driver = ds.Driver
			}
			if ds.Queue != "" {
				s.Queue = ds.Queue
			}
			if ds.Priority != 0 {
				s.Priority = ds.Priority
			}
		}
	}
	s.Active = p.active.Load()
	s.Acked = p.acked.Load()
	s.Retried = p.retried.Load()
	s.Requeued = p.requeued.Load()
	s.Dead = p.dead.Load()
	if err := p.Check(); err != nil {
		if s.Error == "" {
			s.Error = err.Error()
		}
	} else if s.Error == "" {
		s.Consuming = true
	}
	return s
}
