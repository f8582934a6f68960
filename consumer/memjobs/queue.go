// Package memjobs is the in-memory broker driver, the embedded default of
// Pipevisor: a pipeline with driver "memory" keeps its jobs in the
// supervisor's own memory. Nothing persists across a restart.
//
// A Queue orders ready jobs by priority (lower number first; a job with
// priority 0 inherits the pipeline priority) and, within a priority, by
// publish order. Retry(0) and Release put a job back at its original
// position, ahead of every job published after it. Delayed jobs wait in a
// single heap; no goroutine is started per job, and the Queue owns no
// background goroutine at all: a blocked Receive sleeps until the earliest
// delay is due.
//
// Jobs with the same non-empty Key form a lane: they are handed out one at
// a time in publish order. While a keyed job is handed out, waiting for a
// retry delay or sitting in the ready heap, its later siblings wait behind
// it; the next one becomes ready only once it is acked, dead-lettered or
// auto-acked.
package memjobs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/internal/localq"
)

// Driver is the driver name reported in deliveries and stats.
const Driver = "memory"

// Compile-time checks of the interfaces a Queue implements.
var (
	_ consumer.Consumer  = (*Queue)(nil)
	_ consumer.Publisher = (*Queue)(nil)
	_ consumer.Stater    = (*Queue)(nil)
	_ consumer.Pauser    = (*Queue)(nil)
	_ consumer.Checker   = (*Queue)(nil)
)

var _ consumer.ReadyReceiver = (*Queue)(nil)

// item is one job outside a pack: handed out, put back, delayed, keyed,
// or dead. The items of a pack share one allocation, made when its first
// job is taken; the keyed and delayed jobs of one Publish call share
// another. The struct is kept at 96 bytes: what only keyed jobs need lives
// in their lane, and job names are shared strings.
type item struct {
	id      string
	name    string
	payload []byte
	headers map[string][]string
	prio    int64
	seq     uint64 // position: publish order, kept across Retry(0)/Release
	lane    *lane  // the job's key, until it is done; nil without a key
	attempt int32
	autoAck bool
	state   localq.State
	packed  bool // taken from a pack: id and payload alias the pack's buffers
}

// key returns the job's ordering key; empty once the job is done.
func (it *item) key() string {
	if it.lane == nil {
		return ""
	}
	return it.lane.Key
}

// lane holds the jobs of one key (see localq.Lanes); the due times of the
// jobs waiting in it are in ns since Queue start.
type lane = localq.Lane[*item]

// Queue is an in-memory pipeline. It implements consumer.Consumer,
// consumer.Publisher, consumer.Stater, consumer.Pauser, consumer.Checker
// and consumer.ReadyReceiver. All methods are safe for concurrent use.
type Queue struct {
	name  string
	cfg   Config
	log   *slog.Logger
	start time.Time // origin of the monotonic due times

	mu      sync.Mutex  // guards core and everything below
	core    localq.Core // life cycle, pause, prefetch, blocked Receives
	ready   readySet    // by (priority, seq)
	delayed itemHeap    // by (due, seq)
	lanes   localq.Lanes[*item]
	seq     uint64
	dead    []DeadJob
	deadSeq uint64      // last DeadJob.seq given out
	deadOps sync.Mutex  // serialises RetryDead and RemoveDead
	burst   burst       // published since the queue was last empty
	marks   []mark      // when the jobs of each seq range entered (see oldest.go)
	release *time.Timer // pending return of a drained burst's memory

	releasing    sync.WaitGroup // a return of memory running
	freeOSMemory func()         // replaces debug.FreeOSMemory in tests; nil: the real one
}

// New returns an open, empty queue for the pipeline name. Zero fields of
// cfg take their defaults; New does not validate cfg (call cfg.Validate
// first). A nil log discards log output.
func New(name string, cfg Config, log *slog.Logger) *Queue {
	cfg.Defaults()
	if cfg.Prefetch < 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queue{
		name:  name,
		cfg:   cfg,
		log:   log.With("pipeline", name, "driver", Driver),
		start: time.Now(),
	}
	q.core.Init(&q.mu, localq.Config{Prefix: "memjobs", Driver: Driver, Name: name,
		Priority: cfg.Priority, Prefetch: cfg.Prefetch})
	q.lanes.Init()
	return q
}

// Name returns the pipeline name given to New.
func (q *Queue) Name() string { return q.name }

func (q *Queue) now() int64 { return int64(time.Since(q.start)) }

// Publish queues every job under one lock and returns once all of them are
// queued; it fails only when the queue is closed (consumer.ErrClosed) or
// ctx is already done, and then queues none: a memory publish is never in
// doubt. A job without an ID gets a
// random UUID; a job with priority 0 gets the pipeline priority; a job with
// a Delay becomes ready once the delay has passed. Publish copies plain
// jobs (no key, no delay) into compact packs (a job published alone, only
// once a backlog has built up) and keeps references to the Payload and
// Headers of the others: callers must not modify them later.
func (q *Queue) Publish(ctx context.Context, jobs []consumer.Job) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memjobs: publish to %q: %w", q.name, err)
	}
	if len(jobs) == 0 {
		return nil
	}
	b := q.encode(jobs)
	var size int64
	for i := range jobs {
		size += int64(len(jobs[i].Payload))
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.core.IsOpen() {
		return q.core.ErrClosed("publish to")
	}
	q.burst.add(len(jobs), size)
	now := q.now()
	if q.delayed.Len() > 0 {
		// Jobs whose delay ended before this publish queue ahead of it.
		q.promoteDue(now)
	}
	// Seqs in the batch are relative: job i has seq i+1.
	base := q.seq
	q.markLocked(base+1, now)
	q.seq += uint64(len(jobs))
	for _, op := range b.ops {
		if p := op.pack; p != nil {
			p.nextSeq += base
			q.ready.pushPack(p)
			continue
		}
		it := op.it
		it.seq += base
		var due int64
		if op.delay > 0 {
			due = now + int64(op.delay)
		}
		if op.key != "" {
			l, head := q.lanes.Join(op.key, it, due)
			it.lane = l
			if !head {
				it.state = localq.Pending
				continue
			}
		} else if due == 0 {
			// Neither keyed nor delayed: a plain job published alone.
			it.state = localq.Ready
			q.ready.pushAlone(it)
			continue
		}
		q.schedule(it, due, now, true)
	}
	q.core.KickLocked()
	return nil
}

// schedule puts it in the delay heap when due is after now, else in the
// ready set at its own position (it.seq); newest says no queued job has a
// larger seq. Caller holds q.mu.
func (q *Queue) schedule(it *item, due, now int64, newest bool) {
	if due > now {
		it.state = localq.Delayed
		q.delayed.Push(entry{K1: due, K2: it.seq, Item: it})
		return
	}
	it.state = localq.Ready
	if newest {
		q.ready.pushNewest(it)
	} else {
		q.ready.pushBack(it)
	}
}

// promoteDue moves every delayed item whose time has come to the ready
// heap, behind the jobs already ready. Caller holds q.mu.
func (q *Queue) promoteDue(now int64) {
	if q.delayed.Len() > 0 && q.delayed.Top().K1 <= now {
		q.markLocked(q.seq+1, now)
	}
	for q.delayed.Len() > 0 && q.delayed.Top().K1 <= now {
		it := q.delayed.Pop().Item
		q.seq++
		it.seq = q.seq
		it.state = localq.Ready
		q.ready.pushNewest(it)
	}
}

// takeReady pops the most urgent job of the ready set, or returns nil when
// it is empty, and the job's key. Caller holds q.mu and has checked that a
// job may be handed out (not paused, prefetch cap not reached) and moved
// due delayed jobs to the ready set.
func (q *Queue) takeReady() (*item, string) {
	if q.ready.len() == 0 {
		return nil, ""
	}
	it := q.ready.pop()
	key := it.key()
	if it.autoAck {
		q.finish(it) // drops the lane, and with it the key
	} else {
		it.state = localq.Active
		q.core.HandOutLocked()
	}
	return it, key
}

// Receive hands out the most urgent ready job. It blocks, without polling,
// until a job is ready and fewer than prefetch deliveries are unsettled,
// or until ctx is done (it then returns ctx.Err()), or the queue is closed
// (consumer.ErrClosed). Auto-ack jobs are settled on receipt: their
// delivery's Settle does nothing.
func (q *Queue) Receive(ctx context.Context) (*consumer.Delivery, error) {
	return localq.Receive(ctx, &q.core, (*source)(q))
}

// deliver wraps an item taken by Receive or ReceiveReady. It needs no
// lock (Receive calls it without q.mu, ReceiveReady with it): the item is
// owned by this hand-out until its delivery is settled.
func (q *Queue) deliver(it *item, key string) *consumer.Delivery {
	d := &consumer.Delivery{
		ID:       it.id,
		Job:      it.name,
		Pipeline: q.name,
		Driver:   Driver,
		Queue:    q.name,
		Headers:  it.headers,
		Body:     it.payload,
		Attempt:  int(it.attempt),
		Key:      key,
		Priority: it.prio,
	}
	if !it.autoAck {
		d.SetSettle(func(_ context.Context, o consumer.Outcome) error { return q.settle(it, o) })
	}
	return d
}

// settle carries out an outcome for the item's current delivery; the
// Delivery guarantees it runs at most once per hand-out. The settle that
// empties the queue after a burst schedules the return of its memory (see
// scheduleRelease).
func (q *Queue) settle(it *item, o consumer.Outcome) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.core.IsClosed() {
		return q.core.ErrClosed("settle on")
	}
	if it.state != localq.Active {
		return fmt.Errorf("memjobs: settle job %q: %w", it.id, ErrNotActive)
	}
	q.core.SettledLocked()
	var err error
	switch o.Action {
	case consumer.Ack:
		q.finish(it)
		it.payload, it.headers = nil, nil
		q.releaseIfDrained()
	case consumer.Dead:
		q.addDead(it, o.Reason)
		q.finish(it)
		it.payload, it.headers = nil, nil
		q.releaseIfDrained()
	case consumer.Retry, consumer.Requeue:
		it.attempt++
		it.headers = consumer.MergeHeaders(it.headers, o.Headers)
		q.requeue(it, o.Delay)
	case consumer.Release:
		q.requeue(it, o.Delay)
	default:
		q.requeue(it, 0)
		err = fmt.Errorf("memjobs: settle job %q: %w: %v", it.id, consumer.ErrUnknownAction, o.Action)
	}
	return err
}

// requeue puts a settled item back: after delay, or at once at its
// original position. Its lane, if any, stays blocked. Caller holds q.mu.
func (q *Queue) requeue(it *item, delay time.Duration) {
	if delay > 0 {
		if it.packed {
			it = it.detach()
		}
		it.state = localq.Delayed
		q.delayed.Push(entry{K1: q.now() + int64(delay), K2: it.seq, Item: it})
		return
	}
	it.state = localq.Ready
	q.ready.pushBack(it)
}

// detach returns a copy of a packed item that holds its own id and
// payload, and marks it done: a job waiting for a delay then keeps only its
// own bytes alive, not the buffers and items of its whole pack. Items with
// a lane are never packed (their lane points at them).
func (it *item) detach() *item {
	c := *it
	c.id = strings.Clone(it.id)
	c.payload = bytes.Clone(it.payload)
	c.packed = false
	it.state = localq.Done
	it.payload, it.headers = nil, nil
	return &c
}

// finish marks it done and lets the next job of its lane go. Caller holds
// q.mu.
func (q *Queue) finish(it *item) {
	it.state = localq.Done
	l := it.lane
	if l == nil {
		return
	}
	it.lane = nil
	next, due, ok := q.lanes.Next(l)
	if !ok {
		return
	}
	var now int64
	if due > 0 {
		now = q.now()
	}
	q.schedule(next, due, now, false)
}

// Stat reports the queue's numbers: Ready counts jobs waiting to be
// handed out (including keyed jobs waiting behind their lane), Delayed the
// jobs waiting for a delay, Active the deliveries handed out and not
// settled. Consuming is false while paused or closed. It never fails.
func (q *Queue) Stat(_ context.Context) (consumer.Stat, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.delayed.Len() > 0 {
		q.promoteDue(q.now())
	}
	return q.core.StatLocked(q.name, q.ready.len()+q.lanes.Pending(), q.delayed.Len()), nil
}

// Pause stops Receive and ReceiveReady from handing out jobs until
// Resume; blocked Receive calls keep waiting. Publish and Settle keep
// working. It is idempotent and returns consumer.ErrClosed on a closed
// queue.
func (q *Queue) Pause(ctx context.Context) error { return q.core.Pause(ctx) }

// Resume undoes Pause. It is idempotent and returns consumer.ErrClosed on
// a closed queue.
func (q *Queue) Resume(ctx context.Context) error { return q.core.Resume(ctx) }

// Check returns nil while the queue is open and consumer.ErrClosed after
// Close.
func (q *Queue) Check() error { return q.core.Check() }

// Close stops the queue: Receive and Publish return consumer.ErrClosed at
// once, blocked Receive calls included. Deliveries already handed out can
// still be settled while Close waits for them, until ctx is done; after
// Close returns, Settle returns consumer.ErrClosed. Close returns nil when
// every delivery was settled, else an error wrapping ctx.Err(). Queued
// jobs stay in the queue (Stat and Dead keep working) and are dropped with
// it, with a warning that counts them. Close is idempotent.
func (q *Queue) Close(ctx context.Context) error {
	last, err := q.core.Close(ctx, q.stopRelease)
	if last {
		q.warnDiscarded()
	}
	return err
}
