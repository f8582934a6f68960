package kafkajobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

const (
	// pollBatch is the most records one poll takes from the client.
	pollBatch = 64
	// partitionBuffer is how many records of one partition may be held
	// locally (handed out, waiting or not yet handed out); a poll may
	// bring up to pollBatch-1 more. See flow.go.
	partitionBuffer = 512
	// copyRetryDelay is the first wait before a dead-letter copy that
	// could not be produced is tried again (then doubling up to
	// maxCopyRetryDelay, see deadletter.go), and the least delay of the
	// in-place retry that stands in for a retry copy that could not be
	// produced.
	copyRetryDelay = time.Second
)

type entryState uint8

const (
	statePending entryState = iota // fetched, waiting to be handed out
	stateOut                       // handed out, not settled
	stateDone                      // settled for good: may be committed
	// stateDead: settled Dead, its dead-letter copy not produced yet.
	// Never handed out again; its partition (or key) waits for it as for
	// an in-place retry, and so does the commit point (deadletter.go).
	stateDead
	// stateCopying: settled Retry or Requeue through retry_topic, its
	// retry copy still unanswered when Settle's wait ended. Not handed
	// out again until kgo reports the copy's outcome; its partition (or
	// key) and the commit point wait for it (retrycopy.go).
	stateCopying
)

// entry is one fetched record and its local state.
type entry struct {
	rec     *kgo.Record
	meta    meta
	attempt int
	readyAt time.Time // not handed out before this (delay, in-place retry)
	state   entryState
	// deferred marks a record published with a delay that has not been
	// handed out yet: until its time it holds up nobody (only the commit
	// point waits for it); once due, it waits for the later records that
	// passed it and are still out (see partState.eligible).
	deferred bool
	dead     *deadCopy  // the pending dead-letter copy in stateDead
	retry    *retryCopy // the unanswered retry copy in stateCopying
}

// heldAside reports whether e is a delayed record that later records may
// pass.
func (e *entry) heldAside(now time.Time) bool {
	return e.deferred && e.state == statePending && e.readyAt.After(now)
}

// partState is the local state of one assigned partition. A revoked or
// lost partition's state is marked revoked and forgotten; a later
// assignment of the same partition starts a fresh partState, so
// settlements of the old one can tell they are stale.
type partState struct {
	tp       topicPartition
	revoked  bool
	revoking bool     // being revoked: nothing more is handed out
	entries  []*entry // offset order; the done prefix is popped
	// timed counts the entries with a readyAt (delayed or retried in
	// place), so that looking for the next one skips partitions without.
	timed int
	ndead int   // entries in stateDead
	next  int64 // next offset expected from fetches; -1 unknown

	popped    kgo.EpochOffset // one past the last record popped as done
	hasPopped bool
	dirty     bool          // something was done since the last commit
	skip      []offsetRange // done before we got the partition (commit metadata)

	hwm       int64 // high watermark from the last fetch or end-offset probe
	hasHWM    bool
	committed int64 // the group's committed offset when assigned; -1 none
	probeBase int64 // end offset of the first probe while next and committed were unknown
	hasBase   bool
	paused    bool // paused at the broker (see flow.go)
	// progress is when a record of ps was last handed out or settled, or
	// ps got records while it had none.
	progress time.Time
}

// eligible returns the first entry that may be handed out now under ord,
// or nil. At most one entry of ps (ordering: partition) or of one key
// (ordering: key) is out at any time, and an entry waiting for an
// in-place retry or for its dead-letter copy holds back the later ones
// of ps (or of its key). A delayed record that later records
// passed while it was held aside is not handed out, once due, until those
// of them that are out are settled. Only such a record costs a second
// scan; without delayed records eligible looks at no entry twice.
func (ps *partState) eligible(ord Ordering, now time.Time) *entry {
	if ord == OrderPartition {
		for i, e := range ps.entries {
			if e.state == stateDone || e.heldAside(now) {
				continue
			}
			if e.state == statePending && !e.readyAt.After(now) && !(e.deferred && ps.passedAndOut(i, false)) {
				return e
			}
			return nil
		}
		return nil
	}
	// The keys of the records ahead that are out or wait for their time:
	// a few in a list on the stack, a map once there are many.
	var (
		small [busyListMax][]byte
		list  = small[:0]
		busy  map[string]struct{}
	)
	for i, e := range ps.entries {
		if e.state == stateDone || e.heldAside(now) {
			continue
		}
		k := e.rec.Key
		if busy != nil {
			if _, ok := busy[string(k)]; ok {
				continue
			}
		} else if slices.ContainsFunc(list, func(b []byte) bool { return bytes.Equal(b, k) }) {
			continue
		}
		if e.state == statePending && !e.readyAt.After(now) && !(e.deferred && ps.passedAndOut(i, true)) {
			return e
		}
		switch {
		case busy != nil:
			busy[string(k)] = struct{}{}
		case len(list) < busyListMax:
			list = append(list, k)
		default:
			busy = make(map[string]struct{}, 2*busyListMax)
			for _, b := range list {
				busy[string(b)] = struct{}{}
			}
			busy[string(k)] = struct{}{}
		}
	}
	return nil
}

// busyListMax is how many busy keys eligible keeps in a list before it
// switches to a map.
const busyListMax = 8

// passedAndOut reports whether a record after ps.entries[i] is out: any
// record of ps, or with sameKey one with the key of ps.entries[i]. Such a
// record passed entries[i] while it was held aside.
func (ps *partState) passedAndOut(i int, sameKey bool) bool {
	k := ps.entries[i].rec.Key
	for _, e := range ps.entries[i+1:] {
		if e.state == stateOut && (!sameKey || bytes.Equal(e.rec.Key, k)) {
			return true
		}
	}
	return false
}

// advance pops the done prefix. It reports whether anything was popped.
func (ps *partState) advance() bool {
	i := 0
	for i < len(ps.entries) && ps.entries[i].state == stateDone {
		i++
	}
	if i == 0 {
		return false
	}
	if ps.timed > 0 {
		for _, e := range ps.entries[:i] {
			if !e.readyAt.IsZero() {
				ps.timed--
			}
		}
	}
	last := ps.entries[i-1].rec
	ps.popped = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
	ps.hasPopped = true
	clear(ps.entries[:i])
	ps.entries = ps.entries[i:]
	return true
}

// consumerState is everything the consuming side shares between Receive,
// settlements, the poller, the committer and the rebalance callbacks.
type consumerState struct {
	ordering  Ordering
	jobHeader string
	priority  int64

	// commitMu serializes commits so that a commit computed before a
	// revocation never lands after the revocation's own commit.
	commitMu sync.Mutex

	mu        sync.Mutex
	parts     map[topicPartition]*partState
	order     []*partState // parts in round-robin order (rebuildOrderLocked)
	rr        int
	changed   chan struct{} // closed and replaced on a change once watched
	watched   bool          // changed was handed out (changedLocked)
	waiters   int           // Receive calls waiting
	active    int           // entries handed out and not settled
	npaused   int           // partitions paused at the broker
	closing   bool          // Close began: Receive returns ErrClosed
	leaving   bool          // Close is leaving the group: revocations do not wait
	closed    bool          // Close done: Settle returns ErrClosed
	fetchErr  error
	commitErr error

	kgoBuf     *kgoBuffer    // records kgo holds, per partition (flow.go)
	sizer      *fetchSizer   // per-partition fetch size (fetchsize.go)
	demand     chan struct{} // Receive -> poller, capacity 1
	roomKick   chan struct{} // settlement -> poller waiting for room, capacity 1
	commitKick chan struct{} // settlement -> committer, capacity 1
	deadKick   chan struct{} // failed dead-letter copy -> its retrier, capacity 1
}

func newConsumerState(cfg Config) *consumerState {
	return &consumerState{
		ordering:   cfg.Ordering,
		jobHeader:  cfg.JobHeader,
		priority:   cfg.Priority,
		parts:      make(map[topicPartition]*partState),
		changed:    make(chan struct{}),
		kgoBuf:     newKgoBuffer(),
		sizer:      newFetchSizer(cfg),
		demand:     make(chan struct{}, 1),
		roomKick:   make(chan struct{}, 1),
		commitKick: make(chan struct{}, 1),
		deadKick:   make(chan struct{}, 1),
	}
}

// notifyLocked wakes everybody waiting for a change (see changedLocked).
// Nobody waiting, it does nothing: no channel per settlement.
func (c *consumerState) notifyLocked() {
	if !c.watched {
		return
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.watched = false
}

// changedLocked returns the channel the next notifyLocked closes.
func (c *consumerState) changedLocked() <-chan struct{} {
	c.watched = true
	return c.changed
}

func (c *consumerState) rebuildOrderLocked() {
	c.order = c.order[:0]
	for _, ps := range c.parts {
		c.order = append(c.order, ps)
	}
	slices.SortFunc(c.order, func(pa, pb *partState) int {
		a, b := pa.tp, pb.tp
		if a.topic != b.topic {
			if a.topic < b.topic {
				return -1
			}
			return 1
		}
		return int(a.partition - b.partition)
	})
}

// pickLocked finds the next entry to hand out, round-robin over
// partitions.
func (c *consumerState) pickLocked(now time.Time) (*partState, *entry) {
	n := len(c.order)
	for i := range n {
		idx := (c.rr + i) % n
		ps := c.order[idx]
		if ps.revoking {
			continue
		}
		if e := ps.eligible(c.ordering, now); e != nil {
			c.rr = idx + 1
			return ps, e
		}
	}
	return nil, nil
}

// nextReadyLocked returns the earliest future readyAt of a pending entry,
// or the zero time.
func (c *consumerState) nextReadyLocked(now time.Time) time.Time {
	var next time.Time
	for _, ps := range c.parts {
		if ps.timed == 0 {
			continue
		}
		for _, e := range ps.entries {
			if e.state == statePending && e.readyAt.After(now) && (next.IsZero() || e.readyAt.Before(next)) {
				next = e.readyAt
			}
		}
	}
	return next
}

// Receive hands out the next record: per partition in offset order, one
// at a time (ordering: partition) or one per key (ordering: key), skipping
// records whose delay or in-place retry has not passed and dead records
// whose dead-letter copy is pending (never handed out again). A delayed
// record that later records passed while it waited runs, once due, only
// when none of them is out. It blocks until a record is available or ctx
// is done (returning ctx's error). It returns consumer.ErrClosed once
// Close began and ErrNotConsuming on a push-only pipeline.
func (d *Driver) Receive(ctx context.Context) (*consumer.Delivery, error) {
	c := d.cons
	if c == nil {
		return nil, ErrNotConsuming
	}
	// The timer is made only when a record waits for its time: most
	// calls find a record at once or wait for a change.
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := time.Now()
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return nil, consumer.ErrClosed
		}
		if ps, e := c.pickLocked(now); e != nil {
			dl := d.handOutLocked(ps, e, now)
			c.mu.Unlock()
			return dl, nil
		}
		changed := c.changedLocked()
		wake := c.nextReadyLocked(now)
		c.waiters++
		c.mu.Unlock()

		select {
		case c.demand <- struct{}{}:
		default:
		}
		var tick <-chan time.Time
		if !wake.IsZero() {
			if timer == nil {
				timer = time.NewTimer(wake.Sub(now))
			} else {
				timer.Reset(wake.Sub(now))
			}
			tick = timer.C
		}
		select {
		case <-changed:
		case <-tick:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		c.mu.Lock()
		c.waiters--
		c.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// handOutLocked hands out e of ps, picked by pickLocked: it marks e out,
// counts it active and returns its delivery. An auto-ack record is
// settled on receipt: done (and committed) before the job runs, and
// settling its delivery changes nothing. Receive and ReceiveReady both
// hand out through it; called with c.mu held.
func (d *Driver) handOutLocked(ps *partState, e *entry, now time.Time) *consumer.Delivery {
	e.state, e.deferred = stateOut, false
	d.cons.active++
	ps.progress = now
	dl := d.delivery(ps, e)
	if e.meta.autoAck {
		d.finishLocked(ps, e)
		dl.SetSettle(func(context.Context, consumer.Outcome) error { return nil })
	}
	return dl
}

// enqueued is when e became ready: its record's timestamp (its produce; a
// retry copy's is the retry), or the end of its delay or in-place retry.
func enqueued(e *entry) time.Time {
	if e.readyAt.After(e.rec.Timestamp) {
		return e.readyAt
	}
	return e.rec.Timestamp
}

// delivery wraps e for the pipeline; called with c.mu held.
func (d *Driver) delivery(ps *partState, e *entry) *consumer.Delivery {
	headers := make(map[string][]string, len(e.meta.headers))
	for k, v := range e.meta.headers {
		headers[k] = slices.Clone(v)
	}
	dl := &consumer.Delivery{
		ID:       e.meta.id,
		Job:      e.meta.job,
		Pipeline: d.name,
		Driver:   DriverName,
		Queue:    e.rec.Topic,
		Headers:  headers,
		Body:     e.rec.Value,
		Attempt:  e.attempt,
		Key:      string(e.rec.Key),
		Priority: e.meta.priority,
		Enqueued: enqueued(e),
		Context:  Position{Topic: e.rec.Topic, Partition: e.rec.Partition, Offset: e.rec.Offset},
	}
	dl.SetSettle(func(ctx context.Context, o consumer.Outcome) error {
		return d.settle(ctx, ps, e, o)
	})
	return dl
}

// settle carries out o for the handed-out entry e of ps (see the
// settlement table in DESIGN.md). With retry_topic, a Retry or Requeue
// whose copy cannot be produced is retried in place instead, as without
// retry_topic (the attempt counts, the headers are kept), after its delay
// but at least copyRetryDelay; the error is returned. A copy still
// unanswered when ctx ends is awaited instead (see settleRetryCopy). A Dead whose
// dead-letter copy cannot be produced is not handed out again (see
// settleDead). A delivery of a partition that was revoked since it was
// handed out returns consumer.ErrStaleDelivery and changes nothing: the
// partition's new owner delivers the record again.
func (d *Driver) settle(ctx context.Context, ps *partState, e *entry, o consumer.Outcome) error {
	c := d.cons
	c.mu.Lock()
	if err := c.staleLocked(ps); err != nil {
		c.mu.Unlock()
		return err
	}
	headers, attempt := e.meta.headers, e.attempt
	c.mu.Unlock()

	switch o.Action {
	case consumer.Ack:
		return d.finish(ps, e)
	case consumer.Release:
		return d.redeliver(ps, e, o.Delay, 0, nil)
	case consumer.Retry, consumer.Requeue:
		headers = consumer.MergeHeaders(headers, o.Headers)
		if d.cfg.RetryTopic == "" {
			return d.redeliver(ps, e, o.Delay, 1, headers)
		}
		var notBefore time.Time
		if o.Delay > 0 {
			notBefore = time.Now().Add(o.Delay)
		}
		rec := copyRecord(d.cfg.RetryTopic, e, headers, attempt+1, notBefore)
		return d.settleRetryCopy(ctx, ps, e, rec, max(o.Delay, copyRetryDelay), headers)
	case consumer.Dead:
		return d.settleDead(ctx, ps, e, o, headers, attempt)
	default:
		return errors.Join(fmt.Errorf("kafkajobs: unknown outcome action %v", o.Action),
			d.redeliver(ps, e, 0, 0, nil))
	}
}

// staleLocked returns the error a settlement of ps gets once the driver is
// closed or ps was revoked; in the revoked case the delivery stops
// counting as active.
func (c *consumerState) staleLocked(ps *partState) error {
	if c.closed {
		return consumer.ErrClosed
	}
	if ps.revoked {
		c.active--
		c.notifyLocked()
		return consumer.ErrStaleDelivery
	}
	return nil
}

// finish marks e done; the committer then commits the new commit point
// of ps.
func (d *Driver) finish(ps *partState, e *entry) error {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.staleLocked(ps); err != nil {
		return err
	}
	d.finishLocked(ps, e)
	return nil
}

// finishLocked marks the handed-out entry e done (see doneLocked).
func (d *Driver) finishLocked(ps *partState, e *entry) {
	d.cons.active--
	d.doneLocked(ps, e, time.Now())
}

// doneLocked marks e done, wakes the committer and, while partitions are
// paused, resumes those that may fetch again.
func (d *Driver) doneLocked(ps *partState, e *entry, now time.Time) {
	c := d.cons
	e.state = stateDone
	wasFull := ps.full()
	ps.advance()
	if wasFull && !ps.full() {
		c.kickRoomLocked()
	}
	ps.dirty = true
	ps.progress = now
	select {
	case c.commitKick <- struct{}{}:
	default:
	}
	if c.npaused > 0 {
		d.applyFlowLocked(now)
	}
	c.notifyLocked()
}

// redeliver puts e back in place, to be handed out again after delay with
// its attempt raised by inc; headers, when not nil, replace its user
// headers.
func (d *Driver) redeliver(ps *partState, e *entry, delay time.Duration, inc int, headers map[string][]string) error {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.staleLocked(ps); err != nil {
		return err
	}
	c.active--
	c.putBackLocked(ps, e, time.Now(), delay, inc, headers)
	return nil
}

// putBackLocked puts e of ps back in place as pending, to be handed out
// again after delay from now with its attempt raised by inc; headers,
// when not nil, replace its user headers. It does not count e as active.
func (c *consumerState) putBackLocked(ps *partState, e *entry, now time.Time, delay time.Duration, inc int, headers map[string][]string) {
	e.state = statePending
	e.attempt += inc
	if headers != nil {
		e.meta.headers = headers
	}
	if !e.readyAt.IsZero() {
		ps.timed--
	}
	e.readyAt = time.Time{}
	if delay > 0 {
		e.readyAt = now.Add(delay)
		ps.timed++
	}
	c.notifyLocked()
}
