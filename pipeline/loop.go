package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/tracing"
)

// Bounds of the wait between failed Receive calls.
const (
	minReceiveBackoff = 50 * time.Millisecond
	maxReceiveBackoff = 5 * time.Second
)

// receiveRecovered: a Receive retried after a failure that has been
// waiting this long without failing clears the failure (Check turns
// green) although no message has come yet. Whether the broker connection
// itself is up is the driver's Checker's to say.
const receiveRecovered = time.Second

// loop is one concurrency slot: acquire -> Receive -> exec -> settle, until
// the pipeline stops. workCtx is cancelled (cause ErrShutdown) when running
// jobs must be interrupted. With Config.Tracer, each job gets a run span
// and a settle span.
func (p *Pipeline) loop(workCtx context.Context) {
	wait := minReceiveBackoff
	settleBase := context.WithoutCancel(workCtx) // settling survives Stop
	s := p.newSlot()
	for {
		rctx, ok := p.acquire(workCtx)
		if !ok {
			return
		}
		// After a failure, a Receive that blocks without failing is the
		// broker answering again, also when no message comes to end it.
		var recovered *time.Timer
		if wait != minReceiveBackoff {
			gen := p.recvErrGen()
			recovered = time.AfterFunc(receiveRecovered, func() { p.clearRecvErr(gen) })
		}
		d, err := p.c.Receive(rctx)
		if recovered != nil {
			recovered.Stop()
		}
		if err != nil {
			if rctx.Err() != nil {
				continue // paused or stopping: acquire decides
			}
			if errors.Is(err, consumer.ErrClosed) {
				p.consumerClosed(err)
				return
			}
			p.setRecvErr(err)
			if wait == minReceiveBackoff || wait == maxReceiveBackoff {
				// First failure of a streak, then every maxReceiveBackoff.
				p.log.WarnContext(rctx, "receive failed", "err", err, "retry_in", wait)
			}
			idle(rctx, wait)
			wait = min(2*wait, maxReceiveBackoff)
			continue
		}
		if wait != minReceiveBackoff {
			wait = minReceiveBackoff
			p.setRecvErr(nil)
		}
		if d == nil {
			continue
		}
		var o consumer.Outcome
		switch {
		case p.stopping():
			// Received while Stop was interrupting Receive: do not start it.
			o = p.turnAway(settleBase, d, fmt.Errorf("%w: received during shutdown", ErrShutdown))
		case rctx.Err() != nil && errors.Is(context.Cause(rctx), ErrPaused):
			// Pause won the race with this Receive: the job goes back
			// to the broker unstarted, as Pause promises.
			o = p.turnAway(settleBase, d, errReceivedWhilePausing)
		default:
			o = s.run(workCtx, settleBase, d, rctx)
		}
		if o.Action == consumer.Release && o.Delay > 0 {
			// No worker was free: do not churn through the queue
			// releasing one job after another; let the pool recover.
			idle(rctx, min(o.Delay, noWorkerPause))
		}
	}
}

// maxKeptCtxBuf: a slot keeps its job context buffer up to this size.
const maxKeptCtxBuf = 64 << 10

// noWorkerPause is how long a slot rests after releasing a job for want
// of a worker.
const noWorkerPause = 100 * time.Millisecond

// idle waits for d or until ctx is done.
func idle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// acquire waits while the pipeline is paused and returns the context for
// the next Receive, cancelled by Pause or Stop. ok is false once the
// pipeline stops.
func (p *Pipeline) acquire(workCtx context.Context) (ctx context.Context, ok bool) {
	for {
		p.mu.Lock()
		if p.state == stateStopped || workCtx.Err() != nil {
			p.mu.Unlock()
			return nil, false
		}
		if !p.paused {
			if p.recvCtx == nil {
				p.recvCtx, p.recvCancel = context.WithCancelCause(workCtx)
			}
			ctx = p.recvCtx
			p.mu.Unlock()
			return ctx, true
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-workCtx.Done():
			return nil, false
		}
	}
}

// stopping reports whether Stop (or Run's ctx) began the shutdown.
func (p *Pipeline) stopping() bool { return p.stopFlag.Load() }

// setRecvErr records the outcome of a Receive retried after failures:
// err, or nil once it worked.
func (p *Pipeline) setRecvErr(err error) {
	p.mu.Lock()
	p.recvErr = err
	p.recvGen++
	p.mu.Unlock()
}

// recvErrGen returns the generation of the recorded Receive failure.
func (p *Pipeline) recvErrGen() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recvGen
}

// clearRecvErr forgets the Receive failure if none was recorded since
// generation gen.
func (p *Pipeline) clearRecvErr(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recvGen == gen {
		p.recvErr = nil
	}
}

func (p *Pipeline) consumerClosed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateStopped && p.closedErr == nil {
		p.closedErr = err
	}
}

// turnAway settles d, which did not run because of err (wrapping
// ErrShutdown or ErrPaused): it goes back to the broker unstarted.
func (p *Pipeline) turnAway(settleBase context.Context, d *consumer.Delivery, err error) consumer.Outcome {
	start := time.Now()
	p.active.Add(1)
	tj := p.cfg.Tracer.Received(d)
	return p.finish(settleBase, d, frame.Reply{}, err, start, start, 0, &tj)
}

// finish settles d after its execution (reply, or err) ended at now, and
// counts and reports its fate once the outcome is final (see report). start
// is when d was taken for a slot, execTook the time it spent on a worker.
// It ends d's count in Active. tj records the settle span.
func (p *Pipeline) finish(settleBase context.Context, d *consumer.Delivery, reply frame.Reply, err error, start, now time.Time, execTook time.Duration, tj *tracing.Job) consumer.Outcome {
	defer p.active.Add(-1)
	f := fate{p: p, d: d, o: outcomeFor(reply, err, d.Attempt, p.cfg.Retry, p.cfg.Rand), err: err,
		start: start, now: now, execTook: execTook}
	if tj.Enabled() {
		f.settleStart = time.Now()
	}
	sctx := newSettleCtx(settleBase, now, p.cfg.SettleTimeout)
	serr := d.Settle(sctx, f.o)
	sctx.cancel()
	if serr != nil || d.Final() {
		f.tj = tj
		f.report(serr)
		return f.o
	}
	// The driver makes the outcome final later (boltdb: on disk): the
	// counters, metrics, span and log line say it was settled only then,
	// so that a crash never loses an outcome reported as settled.
	later := f
	later.tjv = *tj
	later.tj = &later.tjv
	d.WhenFinal(later.report)
	return f.o
}

// fate is a settled job waiting to be reported.
type fate struct {
	p           *Pipeline
	d           *consumer.Delivery
	o           consumer.Outcome
	err         error // the execution's
	start, now  time.Time
	settleStart time.Time
	execTook    time.Duration
	tj          *tracing.Job
	tjv         tracing.Job // tj's value when the report runs later
}

// report counts and reports the fate of a job whose outcome is final, or
// failed with serr.
func (f *fate) report(serr error) {
	p, d, o := f.p, f.d, f.o
	took := time.Since(f.start)
	if f.tj.Enabled() {
		f.tj.Settled(o, serr, f.settleStart, f.start.Add(took))
	}
	if serr == nil {
		switch o.Action {
		case consumer.Ack:
			p.acked.Add(1)
		case consumer.Retry:
			p.retried.Add(1)
		case consumer.Requeue:
			p.requeued.Add(1)
		case consumer.Dead:
			p.dead.Add(1)
		}
	}
	if p.cfg.Observer != nil {
		// Release is exactly the outcome of a job that reached no worker
		// (or was cut off by shutdown): it neither ran nor failed.
		fa := Fate{Action: o.Action, Took: took, Wait: -1}
		if o.Action != consumer.Release {
			fa.Exec, fa.Failed = f.execTook, f.err != nil
			if !d.Enqueued.IsZero() {
				fa.Wait = max(f.now.Add(-f.execTook).Sub(d.Enqueued), 0)
			}
		}
		p.cfg.Observer.Observe(p.cfg.Name, fa)
	}
	p.logFate(d, o, f.err, serr, took)
}

// reply parses what the executor returned for a job run under ctx. An
// error caused by the shutdown of running jobs wraps ErrShutdown.
func (p *Pipeline) reply(ctx context.Context, out frame.Payload, err error) (frame.Reply, error) {
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrShutdown) && errors.Is(context.Cause(ctx), ErrShutdown) {
			err = fmt.Errorf("%w: %w", ErrShutdown, err)
		}
		return frame.Reply{}, err
	}
	return frame.ParseReply(out.Body)
}

// logFate writes the one log line of a job: debug for the expected fates,
// warn for failures.
func (p *Pipeline) logFate(d *consumer.Delivery, o consumer.Outcome, err, serr error, took time.Duration) {
	ctx := context.Background()
	lvl := slog.LevelDebug
	if serr != nil || o.Action == consumer.Dead || (err != nil && o.Action == consumer.Retry) ||
		(o.Action == consumer.Release && !errors.Is(err, ErrShutdown) && !errors.Is(err, ErrPaused)) {
		lvl = slog.LevelWarn
	}
	if !p.log.Enabled(ctx, lvl) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", d.ID),
		slog.String("job", d.Job),
		slog.Int("attempt", d.Attempt),
		slog.String("outcome", o.Action.String()),
		slog.Duration("took", took),
	}
	if o.Delay > 0 {
		attrs = append(attrs, slog.Duration("delay", o.Delay))
	}
	if o.Reason != "" {
		attrs = append(attrs, slog.String("reason", o.Reason))
	}
	if serr != nil {
		attrs = append(attrs, slog.String("settle_error", serr.Error()))
	}
	p.log.LogAttrs(ctx, lvl, "job settled", attrs...)
}
