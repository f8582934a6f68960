// Package boltjobs is the durable embedded driver ("boltdb"): a pipeline
// keeps its jobs in a bbolt database file, so they survive a restart, a
// crash of the supervisor or of the machine, with no broker to run.
//
// Every job is one record in the pipeline's bucket, keyed by its sequence
// number (publish order). Publish returns once its jobs are written and
// fsynced; Ack deletes the record, Dead moves it to the pipeline's dead
// bucket, Retry and Requeue rewrite it (attempt, headers, due time).
// Settle returns once Retry, Requeue and Dead are fsynced; an Ack (or a
// Release) returns once queued for the next commit, which follows within
// one fsync: a crash before that commit runs the job again, as a crash
// while it runs does. A job is handed out only once a running mark for it
// is on disk, and a job found marked at open has its attempt counted, so
// every run of a job is counted, however soon after its start the
// supervisor dies. So that Receive seldom waits for an fsync, the
// next ready jobs are marked ahead of their hand-out by the commits that
// go on anyway (group commits, a Publish's): about as many as were handed
// out over two of the slower recent commits, at most MarkAhead. A crash counts an attempt for
// those of them that had not started too; Pause and Close take their
// marks off. A Receive whose job is not marked yet wakes the writer and
// waits for the commit that marks it.
//
// One goroutine per file (owned by Files, stopped when the file's last
// queue closes) writes: it commits whatever changes accumulated, of every
// pipeline of the file, in one write transaction ended by one fsync (group
// commit).
//
// In memory a Queue orders jobs as the memory driver does: by priority
// (lower first; 0 inherits the pipeline priority), then publish order;
// Retry(0) and Release keep a job's position; delayed jobs wait in a heap
// of deadlines (wall-clock, kept across restarts); jobs with the same Key
// are handed out one at a time in publish order. Every job of the
// pipeline is held in memory too; the file is read once, at open.
package boltjobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/internal/localq"
)

// Driver is the driver name reported in deliveries and stats.
const Driver = "boltdb"

// Compile-time checks of the interfaces a Queue implements.
var (
	_ consumer.Consumer      = (*Queue)(nil)
	_ consumer.Publisher     = (*Queue)(nil)
	_ consumer.Stater        = (*Queue)(nil)
	_ consumer.Pauser        = (*Queue)(nil)
	_ consumer.Checker       = (*Queue)(nil)
	_ consumer.ReadyReceiver = (*Queue)(nil)
)

// item is one job of the queue: its record and where it is.
type item struct {
	rec    record
	seq    uint64 // key on disk: publish order
	pos    uint64 // position among ready jobs of its priority
	lane   *lane  // the job's key, until it is done; nil without a key
	state  localq.State
	mark   mark     // where its running mark is (see takeReady)
	set    *markSet // the set holding its mark, if any
	setIdx int      // its index in set
	// settledIn is the commit carrying its last settlement (guarded by
	// Queue.mu; see whenFinal).
	settledIn *commitWait
}

// lane holds the jobs of one key (see localq.Lanes).
type lane = localq.Lane[*item]

// Queue is one boltdb pipeline. It implements consumer.Consumer,
// consumer.Publisher, consumer.Stater, consumer.Pauser, consumer.Checker
// and consumer.ReadyReceiver. All methods are safe for concurrent use.
type Queue struct {
	name string
	cfg  Config
	log  *slog.Logger
	s    *store

	mu        sync.Mutex  // guards core and everything below
	core      localq.Core // life cycle, pause, prefetch, blocked Receives
	ready     itemHeap    // by (priority, pos): ready jobs without a running mark
	ahead     itemHeap    // by (priority, pos): ready jobs marked ahead (marks.go)
	delayed   itemHeap    // by (due, pos)
	lanes     localq.Lanes[*item]
	seq       uint64 // last sequence number used (disk keys and positions)
	deadN     int    // records in the dead bucket
	handed    int    // jobs handed out since the last commit was built
	starved   int    // takes that waited for a mark since the last commit was built
	window    int    // how many ready jobs to keep marked ahead
	pubMarked int    // jobs marked in a Publish whose commit is not done
	lost      int    // jobs of ahead whose mark a failed commit carried
	setID     uint64 // last mark set id used

	deadOps sync.Mutex // one dead-store operation at a time
}

func now() int64 { return time.Now().UnixNano() }

// Name returns the pipeline name.
func (q *Queue) Name() string { return q.name }

// File returns the absolute path of the pipeline's database file.
func (q *Queue) File() string { return q.s.path }

// Publish writes every job to the file and returns once the commit that
// carries them is fsynced; the jobs are queued (may be handed out) from
// that moment. A job without an ID gets a random UUID; a
// job with priority 0 gets the pipeline priority; a job with a Delay
// becomes ready once the delay has passed, a deadline kept across
// restarts. It fails, with none of the jobs queued, with
// consumer.ErrClosed after Close, with ctx.Err() when ctx is already done,
// and with the write error when the commit fails. When ctx ends while it
// waits for the commit, it returns a *consumer.BatchError whose every job
// error wraps consumer.ErrInDoubt: the commit goes on, and the jobs are
// queued if it succeeds.
func (q *Queue) Publish(ctx context.Context, jobs []consumer.Job) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltjobs: publish to %q: %w", q.name, err)
	}
	if len(jobs) == 0 {
		return nil
	}
	t := now()
	items := make([]item, len(jobs))
	size := 0
	for i := range jobs {
		j := &jobs[i]
		r := record{id: j.ID, name: j.Name, key: j.Key, payload: j.Payload, headers: j.Headers,
			prio: j.Priority, attempt: 1, autoAck: j.AutoAck}
		if r.id == "" {
			r.id = uuid.NewString()
		}
		if r.prio == 0 {
			r.prio = q.cfg.Priority
		}
		r.enq = t
		if j.Delay > 0 {
			r.due = t + int64(j.Delay)
			r.enq = r.due
		}
		items[i].rec = r
		size += r.encodedSize()
	}
	buf := make([]byte, 0, size)
	ops := make([]op, len(jobs))
	for i := range items {
		start := len(buf)
		buf = items[i].rec.encode(buf)
		ops[i] = op{q: q, kind: opPut, val: buf[start:len(buf):len(buf)]}
	}

	q.mu.Lock()
	if !q.core.IsOpen() {
		q.mu.Unlock()
		return q.core.ErrClosed("publish to")
	}
	for i := range items {
		it := &items[i]
		q.seq++
		it.seq, it.pos = q.seq, q.seq
		ops[i].seq = it.seq
	}
	ops, marked := q.markPublished(ops, items)
	w := q.s.enqueueWith(func() { q.placeCommitted(items) }, marked, ops...)
	q.mu.Unlock()

	if inDoubt, err := w.wait(ctx); err != nil {
		if !inDoubt {
			// The commit failed: nothing was written or queued.
			return fmt.Errorf("boltjobs: publish to %q: %w", q.name, err)
		}
		be := &consumer.BatchError{Failed: make(map[int]error, len(jobs))}
		for i := range jobs {
			be.Failed[i] = fmt.Errorf("boltjobs: publish to %q: %w: %w", q.name, consumer.ErrInDoubt, err)
		}
		return be
	}
	return nil
}

// placeCommitted queues the items of a Publish once their commit is done:
// a job is handed out only once it is on disk. The writer calls it.
func (q *Queue) placeCommitted(items []item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := now()
	if q.delayed.Len() > 0 {
		q.promoteDue(t)
	}
	for i := range items {
		q.place(&items[i], t)
	}
	q.core.KickLocked()
}

// place queues a new or loaded item: behind its lane's head when its key
// has one, else ready or delayed. Caller holds q.mu.
func (q *Queue) place(it *item, t int64) {
	if k := it.rec.key; k != "" {
		l, head := q.lanes.Join(k, it, it.rec.due)
		it.lane = l
		if !head {
			it.state = localq.Pending
			return
		}
	}
	q.schedule(it, t)
}

// schedule puts it in the delay heap when its due time is after t, else
// in the ready heap at its position (q.ahead when it is marked). Caller
// holds q.mu.
func (q *Queue) schedule(it *item, t int64) {
	if it.rec.due > t {
		it.state = localq.Delayed
		q.delayed.Push(entry{K1: it.rec.due, K2: it.pos, Item: it})
		return
	}
	it.state = localq.Ready
	e := entry{K1: it.rec.prio, K2: it.pos, Item: it}
	if it.mark != markNone {
		q.ahead.Push(e)
		return
	}
	q.ready.Push(e)
}

// promoteDue moves every delayed item whose time has come to the ready
// heap, behind the jobs already ready. Caller holds q.mu.
func (q *Queue) promoteDue(t int64) {
	for q.delayed.Len() > 0 && q.delayed.Top().K1 <= t {
		it := q.delayed.Pop().Item
		q.seq++
		it.pos = q.seq
		it.state = localq.Ready
		q.ready.Push(entry{K1: it.rec.prio, K2: it.pos, Item: it})
	}
}

// Receive hands out the most urgent ready job. It blocks, without polling,
// until a job is ready, its running mark is on disk (see Queue) and fewer
// than prefetch deliveries are unsettled, or until ctx is done (it then
// returns ctx.Err()), or the queue is closed (consumer.ErrClosed). Auto-ack jobs are settled on receipt: their
// delivery's Settle does nothing.
func (q *Queue) Receive(ctx context.Context) (*consumer.Delivery, error) {
	return localq.Receive(ctx, &q.core, (*source)(q))
}

// ReceiveReady hands out, without waiting, the jobs that Receive would hand
// out right now (consumer.ReadyReceiver), at most max, appended to dst in
// the order successive Receive calls would return them. It stops at the
// prefetch cap, when nothing is ready and at a job whose running mark is
// not on disk yet (it has the writer mark it), and it leaves one ready job for
// each Receive that is waiting. dst comes back unchanged when max < 1 or
// the queue is paused or closed.
func (q *Queue) ReceiveReady(dst []*consumer.Delivery, max int) []*consumer.Delivery {
	return localq.ReceiveReady(&q.core, (*source)(q), dst, max)
}

// source is the Queue as localq sees its jobs (localq.Source); its
// methods but Deliver run with q.mu held.
type source Queue

// PromoteDue moves the delayed jobs that are due to the ready heap.
func (s *source) PromoteDue() {
	if s.delayed.Len() > 0 {
		(*Queue)(s).promoteDue(now())
	}
}

// TakeReady takes the most urgent ready job (see Queue.takeReady).
func (s *source) TakeReady() (*item, bool) {
	it := (*Queue)(s).takeReady()
	return it, it != nil
}

// ReadyLen counts the ready jobs, marked ahead or not.
func (s *source) ReadyLen() int { return s.ready.Len() + s.ahead.Len() }

// NextDue is the wait until the earliest delayed job is due.
func (s *source) NextDue() (time.Duration, bool) {
	if s.delayed.Len() == 0 {
		return 0, false
	}
	return time.Duration(s.delayed.Top().K1 - now()), true
}

// Deliver wraps a taken job.
func (s *source) Deliver(it *item) *consumer.Delivery { return (*Queue)(s).deliver(it) }

// deliver wraps an item just taken. It needs no lock: the item belongs to
// this hand-out until its delivery is settled.
func (q *Queue) deliver(it *item) *consumer.Delivery {
	key := it.rec.key
	d := &consumer.Delivery{
		ID:       it.rec.id,
		Job:      it.rec.name,
		Pipeline: q.name,
		Driver:   Driver,
		Queue:    q.name,
		Headers:  it.rec.headers,
		Body:     it.rec.payload,
		Attempt:  int(it.rec.attempt),
		Key:      key,
		Priority: it.rec.prio,
	}
	if it.rec.enq != 0 {
		d.Enqueued = time.Unix(0, it.rec.enq)
	}
	if !it.rec.autoAck {
		d.SetSettle(func(ctx context.Context, o consumer.Outcome) error { return q.settle(ctx, it, o) })
		d.SetWhenFinal(func(fn func(error)) { q.whenFinal(it, fn) })
	}
	return d
}
