package boltjobs

import (
	"slices"

	"github.com/pipevisor/pipevisor/consumer/internal/localq"
)

// MarkAhead is the most ready jobs of a pipeline that carry a running mark
// before they are handed out (see Queue): after a crash, at most this many
// jobs that had not started get an attempt counted, besides the ones that
// were running.
const MarkAhead = 2048

// markAheadMin is the fewest jobs marked at once when a Receive finds the
// next job without a durable mark.
const markAheadMin = 8

// mark is where an item's running mark is.
type mark uint8

const (
	markNone    mark = iota // no mark: none on disk, none on its way
	markPending             // its mark is in a commit not yet done
	markDurable             // its mark is on disk
	markLost                // the commit that carried its mark failed: maybe on disk, maybe not
)

// A job is handed out only once its running mark is on disk, so that a
// crash while it runs, however soon after its hand-out, counts its attempt.
// To keep Receive from waiting for an fsync per job, the commits that go
// on anyway also mark the next ready jobs in order (a window that follows
// the rate jobs are handed out at, up to MarkAhead): every group commit
// tops the marked jobs up (collectMarks), and so does a Publish, its own
// jobs included (markPublished). Marked ready
// jobs wait in q.ahead, the others in q.ready; Receive takes the most
// urgent job of both heaps, and when that job's mark is not on disk yet it
// marks it (and the next ones) in the next commit, which it wakes, and
// waits for that commit. Pause and Close take the marks of the jobs not
// handed out off the file again.

// takeReady pops the most urgent ready job, or returns nil when none is
// ready or the most urgent one's running mark is not on disk yet (then a
// commit that writes it is under way). An auto-ack job needs no mark: it
// is deleted from the file (by the next commit) as it is handed out.
// Caller holds q.mu.
func (q *Queue) takeReady() *item {
	var (
		it        *item
		fromAhead bool
	)
	switch {
	case q.ahead.Len() > 0 && (q.ready.Len() == 0 || q.ahead.Top().Less(q.ready.Top())):
		it, fromAhead = q.ahead.Top().Item, true
	case q.ready.Len() > 0:
		it = q.ready.Top().Item
	default:
		return nil
	}
	if !it.rec.autoAck && it.mark != markDurable {
		q.starved++
		if it.mark != markPending {
			q.markOnDemand()
		}
		return nil
	}
	if fromAhead {
		q.ahead.Pop()
	} else {
		q.ready.Pop()
	}
	q.handed++
	if it.rec.autoAck {
		q.s.enqueue(op{q: q, kind: opDelete, seq: it.seq})
		q.finish(it)
		return it
	}
	it.state = localq.Active
	q.core.HandOutLocked()
	return it
}

// markOnDemand marks the most urgent ready job and the ones after it, at
// least markAheadMin or the current window, in a commit of their own
// that it wakes the writer for. Caller holds q.mu.
func (q *Queue) markOnDemand() {
	var items []*item
	q.remarkLost(&items)
	q.markNext(&items, max(1, max(q.window, markAheadMin)-q.ahead.Len()-q.pubMarked))
	if len(items) == 0 {
		return
	}
	q.s.enqueueWith(nil, func(err error) { q.marksWritten(items, err) }, q.newMarkSet(nil, items)...)
}

// collectMarks tops the marked jobs up to the window before a commit: it
// appends to ops a running mark for the next ready jobs (and again for
// those whose mark a failed commit carried), and returns the function the
// writer calls with the commit's result. The window (nextWindow) is at
// least twice the jobs handed out (or waited for) since the last commit,
// grows at once and shrinks slowly; past MarkAhead, the least urgent
// marked jobs lose their mark. Nothing is marked while the queue is paused
// or closing. The writer calls it while it builds a commit, after it took
// the queued changes.
func (q *Queue) collectMarks(ops []op) ([]op, func(error)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.window = nextWindow(q.window, q.handed, q.starved)
	q.handed, q.starved = 0, 0
	if !q.core.IsOpen() || q.core.PausedLocked() {
		return ops, nil
	}
	var items []*item
	q.remarkLost(&items)
	q.markNext(&items, q.window-q.ahead.Len()-q.pubMarked)
	ops = q.newMarkSet(ops, items)
	ops = q.trimAhead(ops)
	if len(items) == 0 {
		return ops, nil
	}
	return ops, func(err error) { q.marksWritten(items, err) }
}

// markPublished appends to ops, the changes of a Publish of items,
// running marks within the window: first for the next ready jobs not
// marked yet (as collectMarks would), then for the Publish's own jobs,
// which come after them; keyed, delayed and auto-ack jobs of the Publish
// are left unmarked. So jobs published while the consumers keep up are
// marked by their own commit. It returns the function the writer calls
// with the commit's result, nil when it marked none. Caller holds q.mu.
func (q *Queue) markPublished(ops []op, items []item) ([]op, func(error)) {
	room := max(q.window, markAheadMin) - q.ahead.Len() - q.pubMarked
	if room <= 0 || !q.core.IsOpen() || q.core.PausedLocked() {
		return ops, nil
	}
	var ready, marked []*item
	n := q.ahead.Len()
	q.markNext(&ready, room)
	room -= q.ahead.Len() - n
	for i := range items {
		if room <= 0 {
			break
		}
		it := &items[i]
		if it.rec.key != "" || it.rec.due != 0 || it.rec.autoAck {
			continue
		}
		it.mark = markPending
		marked = append(marked, it)
		room--
	}
	if len(ready) == 0 && len(marked) == 0 {
		return ops, nil
	}
	ops = q.newMarkSet(ops, append(ready, marked...)) // the set keeps a copy
	q.pubMarked += len(marked)
	return ops, func(err error) {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.pubMarked -= len(marked)
		if err != nil {
			// Not queued: the Publish failed (its set goes, in case).
			q.s.enqueue(q.dropMarks(nil, false, marked...)...)
		}
		q.marksWrittenLocked(ready, err)
		if err != nil {
			return
		}
		if !q.core.IsOpen() || q.core.PausedLocked() {
			// Paused or closing since: the marks come off again.
			if ops := q.dropMarks(nil, true, marked...); len(ops) > 0 {
				q.s.enqueue(ops...)
			}
			return
		}
		for _, it := range marked {
			if it.mark == markPending {
				it.mark = markDurable
			}
		}
	}
}

// nextWindow returns the window after a commit interval in which handed
// jobs were handed out and starved takes found their job not marked on
// disk yet: it doubles when a take had to wait, takes at least twice what
// the interval used, and otherwise shrinks by 1/256 per commit (commits
// come in all sizes and fsyncs stall now and then: the window keeps what
// the slow ones needed lately), at most MarkAhead.
func nextWindow(window, handed, starved int) int {
	need := 2 * (handed + starved)
	switch {
	case starved > 0:
		window = max(need, 2*window)
	case need > window:
		window = need
	default:
		window -= (window + 255) / 256
	}
	return min(window, MarkAhead)
}

// markNext moves up to n jobs from the top of q.ready to q.ahead, marks
// them pending and appends them to items, for a mark set (auto-ack jobs
// move unmarked). Caller holds q.mu.
func (q *Queue) markNext(items *[]*item, n int) {
	for ; n > 0 && q.ready.Len() > 0; n-- {
		e := q.ready.Pop()
		if it := e.Item; !it.rec.autoAck {
			it.mark = markPending
			*items = append(*items, it)
		}
		q.ahead.Push(e)
	}
}

// remarkLost marks the jobs of q.ahead whose mark a failed commit carried
// pending again and appends them to items, for a mark set. Caller holds
// q.mu.
func (q *Queue) remarkLost(items *[]*item) {
	if q.lost == 0 {
		return
	}
	q.lost = 0
	for _, e := range q.ahead.Entries() {
		if it := e.Item; it.mark == markLost {
			it.mark = markPending
			*items = append(*items, it)
		}
	}
}

// trimAhead takes the marks off the least urgent jobs of q.ahead past
// MarkAhead (a more urgent job marked on demand while the window was
// full) and puts them back in q.ready. Caller holds q.mu.
func (q *Queue) trimAhead(ops []op) []op {
	keep := max(0, MarkAhead-q.pubMarked)
	if q.ahead.Len() <= keep {
		return ops
	}
	es := make([]entry, 0, q.ahead.Len())
	for q.ahead.Len() > 0 {
		es = append(es, q.ahead.Pop())
	}
	for _, e := range es[:keep] {
		q.ahead.Push(e)
	}
	return q.unmarkAll(ops, es[keep:])
}

// dropAhead takes the marks off every job of q.ahead (none of them is
// handed out) and puts them back in q.ready, in a commit it does not wait
// for. Pause and Close call it. Caller holds q.mu.
func (q *Queue) dropAhead() *commitWait {
	if q.ahead.Len() == 0 {
		return nil
	}
	es := slices.Clone(q.ahead.Entries())
	for q.ahead.Len() > 0 {
		q.ahead.Pop()
	}
	ops := q.unmarkAll(nil, es)
	if len(ops) == 0 {
		return nil
	}
	return q.s.enqueue(ops...)
}

// unmarkAll puts the entries es of q.ahead back in q.ready and appends to
// ops what takes their marks off the file. Caller holds q.mu.
func (q *Queue) unmarkAll(ops []op, es []entry) []op {
	its := make([]*item, len(es))
	for i, e := range es {
		its[i] = e.Item
		q.ready.Push(e)
	}
	return q.dropMarks(ops, true, its...)
}

// marksWritten records the result of the commit that carried the marks of
// items: on success those still waiting for it are on disk, and a blocked
// Receive is woken; on failure they are marked again by the next commit
// (a Receive waiting for one of them waits for that commit). An item
// whose mark was taken off since is left alone.
func (q *Queue) marksWritten(items []*item, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.marksWrittenLocked(items, err)
}

// marksWrittenLocked is marksWritten with q.mu held.
func (q *Queue) marksWrittenLocked(items []*item, err error) {
	var lost []*item
	for _, it := range items {
		if it.mark != markPending {
			continue
		}
		if err != nil {
			lost = append(lost, it)
			continue
		}
		it.mark = markDurable
	}
	if err == nil {
		q.core.KickLocked()
		return
	}
	if len(lost) == 0 {
		return
	}
	// The set may be on disk or not: it goes, and its jobs get a new one.
	q.s.enqueue(q.dropMarks(nil, false, lost...)...)
	for _, it := range lost {
		it.mark = markLost
	}
	q.lost += len(lost)
}
