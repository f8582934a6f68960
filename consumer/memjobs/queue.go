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

type itemState uint8

const (
	stateReady   itemState = iota + 1 // in the ready heap
	stateDelayed                      // in the delay heap
	statePending                      // behind the head of its lane
	stateActive                       // handed out, not settled
	stateDone                         // acked, dead or auto-acked
)

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
	state   itemState
	packed  bool // taken from a pack: id and payload alias the pack's buffers
}

// key returns the job's ordering key; empty once the job is done.
func (it *item) key() string {
	if it.lane == nil {
		return ""
	}
	return it.lane.key
}

// lane holds the jobs of one key: head is the one job of the key that may
// be ready, delayed or handed out; pending wait behind it in publish order.
type lane struct {
	key     string
	head    *item
	pending []pending
	off     int // index of the first pending item
}

// pending is a job waiting behind its lane's head.
type pending struct {
	it  *item
	due int64 // publish delay deadline, ns since Queue start; 0: none
}

type queueState uint8

const (
	open    queueState = iota
	closing            // Close is waiting for handed-out deliveries
	closed
)

// Queue is an in-memory pipeline. It implements consumer.Consumer,
// consumer.Publisher, consumer.Stater, consumer.Pauser, consumer.Checker
// and consumer.ReadyReceiver. All methods are safe for concurrent use.
type Queue struct {
	name  string
	cfg   Config
	log   *slog.Logger
	start time.Time // origin of the monotonic due times

	sig  chan struct{} // capacity 1: wakes one blocked Receive
	done chan struct{} // closed when Close starts

	mu       sync.Mutex
	ready    readySet // by (priority, seq)
	delayed  itemHeap // by (due, seq)
	lanes    map[string]*lane
	pendingN int // items waiting behind lane heads
	seq      uint64
	active   int // handed out and not settled (auto-acked jobs excluded)
	waiters  int // Receive calls blocked
	paused   bool
	st       queueState
	idle     chan struct{} // closed when active drops to 0 while closing
	dead     []DeadJob
	deadSeq  uint64      // last DeadJob.seq given out
	deadOps  sync.Mutex  // serialises RetryDead and RemoveDead
	burst    burst       // published since the queue was last empty
	marks    []mark      // when the jobs of each seq range entered (see oldest.go)
	release  *time.Timer // pending return of a drained burst's memory

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
	return &Queue{
		name:  name,
		cfg:   cfg,
		log:   log.With("pipeline", name, "driver", Driver),
		start: time.Now(),
		sig:   make(chan struct{}, 1),
		done:  make(chan struct{}),
		lanes: make(map[string]*lane),
	}
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
	if q.st != open {
		return fmt.Errorf("memjobs: publish to %q: %w", q.name, consumer.ErrClosed)
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
			if l := q.lanes[op.key]; l != nil {
				it.lane = l
				it.state = statePending
				l.pending = append(l.pending, pending{it: it, due: due})
				q.pendingN++
				continue
			}
			l := &lane{key: op.key, head: it}
			it.lane = l
			q.lanes[op.key] = l
		} else if due == 0 {
			// Neither keyed nor delayed: a plain job published alone.
			it.state = stateReady
			q.ready.pushAlone(it)
			continue
		}
		q.schedule(it, due, now, true)
	}
	q.kick()
	return nil
}

// schedule puts it in the delay heap when due is after now, else in the
// ready set at its own position (it.seq); newest says no queued job has a
// larger seq. Caller holds q.mu.
func (q *Queue) schedule(it *item, due, now int64, newest bool) {
	if due > now {
		it.state = stateDelayed
		q.delayed.Push(entry{K1: due, K2: it.seq, Item: it})
		return
	}
	it.state = stateReady
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
		it.state = stateReady
		q.ready.pushNewest(it)
	}
}

// kick wakes one blocked Receive, if any. Caller holds q.mu.
func (q *Queue) kick() {
	if q.waiters > 0 {
		select {
		case q.sig <- struct{}{}:
		default:
		}
	}
}

// take pops the most urgent ready job, or returns nil when none may be
// handed out (empty, paused, or prefetch jobs unsettled), and the job's
// key. Caller holds q.mu.
func (q *Queue) take() (*item, string) {
	if q.paused || q.active >= q.cfg.Prefetch {
		return nil, ""
	}
	if q.delayed.Len() > 0 {
		q.promoteDue(q.now())
	}
	return q.takeReady()
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
		it.state = stateActive
		q.active++
	}
	return it, key
}

// Receive hands out the most urgent ready job. It blocks, without polling,
// until a job is ready and fewer than prefetch deliveries are unsettled,
// or until ctx is done (it then returns ctx.Err()), or the queue is closed
// (consumer.ErrClosed). Auto-ack jobs are settled on receipt: their
// delivery's Settle does nothing.
func (q *Queue) Receive(ctx context.Context) (*consumer.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	for {
		if q.st != open {
			q.mu.Unlock()
			return nil, fmt.Errorf("memjobs: receive from %q: %w", q.name, consumer.ErrClosed)
		}
		if it, key := q.take(); it != nil {
			if q.ready.len() > 0 {
				q.kick() // pass the baton to the next blocked Receive
			}
			at := q.enqueuedLocked(it.seq)
			q.mu.Unlock()
			d := q.deliver(it, key)
			d.Enqueued = at
			return d, nil
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !q.paused && q.active < q.cfg.Prefetch && q.delayed.Len() > 0 {
			timer = time.NewTimer(time.Duration(q.delayed.Top().K1 - q.now()))
			fire = timer.C
		}
		q.waiters++
		q.mu.Unlock()
		select {
		case <-q.sig:
		case <-fire:
		case <-q.done:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		q.mu.Lock()
		q.waiters--
		if err := ctx.Err(); err != nil {
			// We may have taken the wake-up meant for someone else.
			q.kick()
			q.mu.Unlock()
			return nil, err
		}
	}
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
	if q.st == closed {
		return fmt.Errorf("memjobs: settle on %q: %w", q.name, consumer.ErrClosed)
	}
	if it.state != stateActive {
		return fmt.Errorf("memjobs: settle job %q: %w", it.id, ErrNotActive)
	}
	q.active--
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
	if q.st == closing && q.active == 0 && q.idle != nil {
		close(q.idle)
		q.idle = nil
	}
	q.kick()
	return err
}

// requeue puts a settled item back: after delay, or at once at its
// original position. Its lane, if any, stays blocked. Caller holds q.mu.
func (q *Queue) requeue(it *item, delay time.Duration) {
	if delay > 0 {
		if it.packed {
			it = it.detach()
		}
		it.state = stateDelayed
		q.delayed.Push(entry{K1: q.now() + int64(delay), K2: it.seq, Item: it})
		return
	}
	it.state = stateReady
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
	it.state = stateDone
	it.payload, it.headers = nil, nil
	return &c
}

// finish marks it done and lets the next job of its lane go. Caller holds
// q.mu.
func (q *Queue) finish(it *item) {
	it.state = stateDone
	l := it.lane
	if l == nil {
		return
	}
	it.lane = nil
	if l.off == len(l.pending) {
		delete(q.lanes, l.key)
		return
	}
	next := l.pending[l.off]
	l.pending[l.off] = pending{}
	l.off++
	q.pendingN--
	switch {
	case l.off == len(l.pending):
		l.pending = l.pending[:0]
		l.off = 0
	case l.off >= 64 && 2*l.off >= len(l.pending):
		n := copy(l.pending, l.pending[l.off:])
		clear(l.pending[n:])
		l.pending = l.pending[:n]
		l.off = 0
	}
	l.head = next.it
	var now int64
	if next.due > 0 {
		now = q.now()
	}
	q.schedule(next.it, next.due, now, false)
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
	return consumer.Stat{
		Pipeline:  q.name,
		Driver:    Driver,
		Queue:     q.name,
		Priority:  q.cfg.Priority,
		Ready:     int64(q.ready.len() + q.pendingN),
		Delayed:   int64(q.delayed.Len()),
		Active:    int64(q.active),
		Consuming: q.st == open && !q.paused,
	}, nil
}

// Pause stops Receive and ReceiveReady from handing out jobs until
// Resume; blocked Receive calls keep waiting. Publish and Settle keep
// working. It is idempotent and returns consumer.ErrClosed on a closed
// queue.
func (q *Queue) Pause(_ context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.st != open {
		return fmt.Errorf("memjobs: pause %q: %w", q.name, consumer.ErrClosed)
	}
	q.paused = true
	return nil
}

// Resume undoes Pause. It is idempotent and returns consumer.ErrClosed on
// a closed queue.
func (q *Queue) Resume(_ context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.st != open {
		return fmt.Errorf("memjobs: resume %q: %w", q.name, consumer.ErrClosed)
	}
	q.paused = false
	q.kick()
	return nil
}

// Check returns nil while the queue is open and consumer.ErrClosed after
// Close.
func (q *Queue) Check() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.st != open {
		return fmt.Errorf("memjobs: %q: %w", q.name, consumer.ErrClosed)
	}
	return nil
}

// Close stops the queue: Receive and Publish return consumer.ErrClosed at
// once, blocked Receive calls included. Deliveries already handed out can
// still be settled while Close waits for them, until ctx is done; after
// Close returns, Settle returns consumer.ErrClosed. Close returns nil when
// every delivery was settled, else an error wrapping ctx.Err(). Queued
// jobs stay in the queue (Stat and Dead keep working) and are dropped with
// it. Close is idempotent.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	switch q.st {
	case closed:
		q.mu.Unlock()
		return nil
	case open:
		q.st = closing
		close(q.done)
		q.mu.Unlock()
		q.stopRelease()
		q.mu.Lock()
	}
	if q.active == 0 {
		q.st = closed
		q.mu.Unlock()
		q.warnDiscarded()
		return nil
	}
	if q.idle == nil {
		q.idle = make(chan struct{})
	}
	idle := q.idle
	q.mu.Unlock()

	select {
	case <-idle:
		q.mu.Lock()
		q.st = closed
		q.mu.Unlock()
		q.warnDiscarded()
		return nil
	case <-ctx.Done():
		q.mu.Lock()
		n := q.active
		q.st = closed
		q.mu.Unlock()
		q.warnDiscarded()
		if n == 0 {
			return nil
		}
		return fmt.Errorf("memjobs: close %q with %d deliveries unsettled: %w", q.name, n, ctx.Err())
	}
}
