package pipeline

import (
	"context"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/tracing"
)

// slot is one concurrency slot's reusable state for running a batch: the
// delivery Receive returned and, with Config.Pipelining above 1 and a
// consumer.ReadyReceiver, up to Pipelining-1 more that are ready now. Every
// job takes this path; one job is a batch of one.
type slot struct {
	p    *Pipeline
	rr   consumer.ReadyReceiver // nil: one job at a time
	max  int                    // most jobs in a batch
	ds   []*consumer.Delivery
	pls  []frame.Payload
	res  []pool.Result
	bufs [][]byte // the job context JSON of each position, reused
	tr   *tracing.Tracer
	tjs  []tracing.Job // the tracing of each position
}

// newSlot returns a slot's state.
func (p *Pipeline) newSlot() *slot {
	n := 1
	rr, ok := p.c.(consumer.ReadyReceiver)
	if ok && p.cfg.Pipelining > 1 {
		n = min(p.cfg.Pipelining, pool.MaxPipelining)
	} else {
		rr = nil
	}
	return &slot{
		p: p, rr: rr, max: n,
		ds:   make([]*consumer.Delivery, 0, n),
		pls:  make([]frame.Payload, n),
		res:  make([]pool.Result, n),
		bufs: make([][]byte, n),
		tr:   p.cfg.Tracer,
		tjs:  make([]tracing.Job, n),
	}
}

// run runs first and the deliveries ready now behind it (none once rctx,
// the slot's receive context, has ended: paused or stopping) on the
// executor, then settles each with the outcome table, in order. Settling
// happens after the executor returned: no worker waits for a Settle. It
// returns the outcome of a job released for want of a worker, if any
// (the slot then rests), else the last outcome.
func (s *slot) run(workCtx, settleBase context.Context, first *consumer.Delivery, rctx context.Context) consumer.Outcome {
	p := s.p
	s.ds = append(s.ds[:0], first)
	if s.rr != nil && rctx.Err() == nil {
		s.ds = s.rr.ReceiveReady(s.ds, s.max-1)
	}
	n := len(s.ds)
	p.active.Add(int64(n))
	for i, d := range s.ds {
		s.pls[i] = appendPayload(s.bufs[i], d)
		if cap(s.pls[i].Context) <= maxKeptCtxBuf {
			s.bufs[i] = s.pls[i].Context
		}
	}
	start := time.Now()
	if s.tr != nil {
		for i, d := range s.ds {
			s.tjs[i] = s.tr.Received(d)
			s.tjs[i].StartRun(start)
		}
	}
	// Jobs still waiting for a worker when the pipeline pauses or stops
	// (rctx ends) go back unstarted.
	p.ex.Run(workCtx, rctx, s.pls[:n], s.res[:n])

	prev := start
	var rest consumer.Outcome
	for i, d := range s.ds {
		r := &s.res[i]
		at := r.At
		reply, err := p.reply(workCtx, r.Out, r.Err)
		tj := &s.tjs[i]
		if tj.Enabled() {
			tj.EndRun(runErr(reply, err), at)
		}
		o := p.finish(settleBase, d, reply, err, start, at, at.Sub(prev), tj)
		prev = at
		if rest.Action != consumer.Release || rest.Delay == 0 {
			rest = o
		}
	}
	clear(s.ds)
	clear(s.pls[:n])
	clear(s.res[:n])
	clear(s.tjs[:n])
	return rest
}
