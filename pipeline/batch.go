package pipeline

import (
	"context"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/tracing"
)

// batcher is a slot's state for pipelining: after Receive returned one
// delivery it takes up to Config.Pipelining-1 more that are ready now and
// hands them all to the executor at once, which writes them to one worker
// ahead of their replies. Each job is then settled as its reply comes,
// with the same outcome table as a job run alone.
type batcher struct {
	p    *Pipeline
	rr   consumer.ReadyReceiver
	bx   BatchExecutor
	max  int
	ds   []*consumer.Delivery
	pls  []frame.Payload
	bufs [][]byte // the job context JSON of each position, reused
	tr   *tracing.Tracer
	tjs  []tracing.Job // the tracing of each position; nil when tr is nil

	// The batch running now, for settled (made once: a func value
	// passed to ExecBatch would otherwise be allocated per batch).
	workCtx, settleBase context.Context
	start, prev         time.Time
	rest                consumer.Outcome
	settledFn           func(i int, out frame.Payload, err error)
}

// newBatcher returns a slot's batcher, or nil when jobs go one at a time
// (Pipelining below 2, a consumer that is not a ReadyReceiver or an
// executor that is not a BatchExecutor). tr (nil: off) traces each job's
// run and settlement.
func (p *Pipeline) newBatcher(tr *tracing.Tracer) *batcher {
	if p.cfg.Pipelining < 2 {
		return nil
	}
	rr, ok := p.c.(consumer.ReadyReceiver)
	if !ok {
		return nil
	}
	bx, ok := p.ex.(BatchExecutor)
	if !ok {
		return nil
	}
	b := &batcher{
		p: p, rr: rr, bx: bx, max: p.cfg.Pipelining,
		ds:   make([]*consumer.Delivery, 0, p.cfg.Pipelining),
		pls:  make([]frame.Payload, p.cfg.Pipelining),
		bufs: make([][]byte, p.cfg.Pipelining),
		tr:   tr,
	}
	if tr != nil {
		b.tjs = make([]tracing.Job, p.cfg.Pipelining)
	}
	b.settledFn = b.settled
	return b
}

// run runs first and the deliveries ready now behind it (none once rctx,
// the slot's receive context, has ended: paused or stopping) and settles
// each. It returns the outcome of a job released for want of a worker, if
// any (the slot then rests), else the last outcome.
func (b *batcher) run(workCtx, settleBase context.Context, first *consumer.Delivery, rctx context.Context) consumer.Outcome {
	b.ds = append(b.ds[:0], first)
	if rctx.Err() == nil {
		b.ds = b.rr.ReceiveReady(b.ds, b.max-1)
	}
	b.p.active.Add(int64(len(b.ds)))
	for i, d := range b.ds {
		b.pls[i] = appendPayload(b.bufs[i], d)
		if cap(b.pls[i].Context) <= maxKeptCtxBuf {
			b.bufs[i] = b.pls[i].Context
		}
	}
	b.workCtx, b.settleBase = workCtx, settleBase
	b.start = time.Now()
	b.prev, b.rest = b.start, consumer.Outcome{}
	if b.tjs != nil {
		for i, d := range b.ds {
			b.tjs[i] = b.tr.Received(d)
			b.tjs[i].StartRun(b.start)
		}
	}
	b.bx.ExecBatch(workCtx, b.pls[:len(b.ds)], b.settledFn)
	rest := b.rest
	clear(b.ds)
	clear(b.pls)
	clear(b.tjs)
	b.workCtx, b.settleBase, b.rest = nil, nil, consumer.Outcome{}
	return rest
}

// settled is ExecBatch's done: it settles job i of the running batch.
func (b *batcher) settled(i int, out frame.Payload, err error) {
	now := time.Now()
	reply, err := b.p.reply(b.workCtx, out, err)
	var tj tracing.Job
	if b.tjs != nil {
		tj = b.tjs[i]
		tj.EndRun(runErr(reply, err), now)
	}
	o := b.p.finish(b.settleBase, b.ds[i], reply, err, b.start, now, now.Sub(b.prev), &tj)
	b.prev = now
	if b.rest.Action != consumer.Release || b.rest.Delay == 0 {
		b.rest = o
	}
}
