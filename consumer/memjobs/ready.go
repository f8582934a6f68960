package memjobs

import "slices"

// readySet holds the ready jobs, ordered by (priority, seq). Jobs that
// enter with the newest sequence number (just published, or whose delay
// just ended) are appended to a FIFO of their priority, O(1) in and out,
// which is the common path: the plain jobs of a Publish call enter as one
// pack (see pack), others as one item each. Jobs that go back to an
// older position (Retry(0), Release, the next job of a lane) go to a heap.
// pop takes the smaller of the first FIFO's head and the heap's top.
type readySet struct {
	heap  itemHeap
	fifos []*fifo // non-empty, by ascending priority
	n     int     // jobs in the FIFOs, counting every job left in a pack
	spare *fifo   // the last emptied FIFO, reused when its buffer is small
}

// maxSpareBuf: an emptied FIFO keeps its buffer up to this many jobs.
const maxSpareBuf = 4096

// fifo is the jobs of one priority that entered with the newest sequence
// number, in sequence order.
type fifo struct {
	prio int64
	buf  []slot
	head int // index of the first slot in buf
}

// slot is one entry of a fifo: a single item, or a pack of jobs taken one
// by one.
type slot struct {
	it *item
	p  *pack
}

// seq is the seq of the slot's next job.
func (s slot) seq() uint64 {
	if s.p != nil {
		return s.p.nextSeq
	}
	return s.it.seq
}

func (r *readySet) len() int { return r.n + r.heap.Len() }

// pushNewest adds it, whose seq is larger than that of every job in the
// set.
func (r *readySet) pushNewest(it *item) {
	f := r.fifoOf(it.prio)
	f.buf = append(f.buf, slot{it: it})
	r.n++
}

// openPackBacklog: a job published alone starts an open pack, instead of
// being an item, once this many jobs are waiting in the FIFOs.
const openPackBacklog = 64

// pushAlone adds it, a plain job (no key, no delay) published alone, whose
// seq is larger than that of every job in the set. While jobs are few it
// is an item; once a backlog builds up, it goes into an open pack at the
// tail of its FIFO, so that jobs pushed one at a time are queued as
// compactly as batches.
func (r *readySet) pushAlone(it *item) {
	f := r.fifoOf(it.prio)
	r.n++
	if k := len(f.buf); k > f.head {
		if p := f.buf[k-1].p; p != nil && p.open != nil {
			p.appendOpen(it)
			return
		}
	}
	if r.n <= openPackBacklog {
		f.buf = append(f.buf, slot{it: it})
		return
	}
	b := newPackBuilder(it.prio, 0, 0)
	b.p.open = b
	b.p.appendOpen(it)
	f.buf = append(f.buf, slot{p: b.p})
}

// pushPack adds the jobs of p, whose seqs are larger than that of every job
// in the set.
func (r *readySet) pushPack(p *pack) {
	f := r.fifoOf(p.prio)
	f.buf = append(f.buf, slot{p: p})
	r.n += p.left()
}

// fifoOf returns the FIFO of priority prio, adding it when missing.
func (r *readySet) fifoOf(prio int64) *fifo {
	i, found := slices.BinarySearchFunc(r.fifos, prio, func(f *fifo, p int64) int {
		switch {
		case f.prio < p:
			return -1
		case f.prio > p:
			return 1
		}
		return 0
	})
	if !found {
		f := r.spare
		if f == nil {
			f = &fifo{}
		}
		r.spare = nil
		f.prio = prio
		r.fifos = slices.Insert(r.fifos, i, f)
	}
	return r.fifos[i]
}

// pushBack adds it at its own position (it.seq), which may be older than
// jobs already in the set.
func (r *readySet) pushBack(it *item) {
	r.heap.Push(entry{K1: it.prio, K2: it.seq, Item: it})
}

// pop removes and returns the job with the smallest (priority, seq); the
// set must not be empty.
func (r *readySet) pop() *item {
	if len(r.fifos) == 0 {
		return r.heap.Pop().Item
	}
	f := r.fifos[0]
	s := f.buf[f.head]
	if r.heap.Len() > 0 && r.heap.Top().Less(entry{K1: f.prio, K2: s.seq()}) {
		return r.heap.Pop().Item
	}
	r.n--
	head := s.it
	if s.p != nil {
		head = s.p.take()
		if s.p.left() > 0 {
			return head
		}
	}
	f.buf[f.head] = slot{}
	f.head++
	switch {
	case f.head == len(f.buf):
		r.fifos = slices.Delete(r.fifos, 0, 1)
		if cap(f.buf) <= maxSpareBuf {
			f.buf, f.head = f.buf[:0], 0
			r.spare = f
		} // else its memory goes with it
	case f.head >= 1024 && 2*f.head >= len(f.buf):
		k := copy(f.buf, f.buf[f.head:])
		clear(f.buf[k:])
		f.buf = f.buf[:k]
		f.head = 0
	}
	return head
}
