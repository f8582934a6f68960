package memjobs

import "slices"

// readySet holds the ready jobs, ordered by (priority, seq). Jobs that
// enter with the newest sequence number (just published, or whose delay
// just ended) are appended to a FIFO of their priority: 8 bytes per job
// and O(1) in and out, which is the common path. Jobs that go back to an
// older position (Retry(0), Release, the next job of a lane) go to a heap.
// pop takes the smaller of the first FIFO's head and the heap's top.
type readySet struct {
	heap  itemHeap
	fifos []*fifo // non-empty, by ascending priority
	n     int     // jobs in the FIFOs
	spare *fifo   // the last emptied FIFO, reused when its buffer is small
}

// maxSpareBuf: an emptied FIFO keeps its buffer up to this many jobs.
const maxSpareBuf = 4096

// fifo is the jobs of one priority that entered with the newest sequence
// number, in sequence order.
type fifo struct {
	prio int64
	buf  []*item
	head int // index of the first job in buf
}

func (r *readySet) len() int { return r.n + r.heap.len() }

// pushNewest adds it, whose seq is larger than that of every job in the
// set.
func (r *readySet) pushNewest(it *item) {
	i, found := slices.BinarySearchFunc(r.fifos, it.prio, func(f *fifo, p int64) int {
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
		f.prio = it.prio
		r.fifos = slices.Insert(r.fifos, i, f)
	}
	f := r.fifos[i]
	f.buf = append(f.buf, it)
	r.n++
}

// pushBack adds it at its own position (it.seq), which may be older than
// jobs already in the set.
func (r *readySet) pushBack(it *item) {
	r.heap.push(entry{k1: it.prio, k2: it.seq, it: it})
}

// pop removes and returns the job with the smallest (priority, seq); the
// set must not be empty.
func (r *readySet) pop() *item {
	if len(r.fifos) == 0 {
		return r.heap.pop().it
	}
	f := r.fifos[0]
	head := f.buf[f.head]
	if r.heap.len() > 0 && r.heap.top().less(entry{k1: head.prio, k2: head.seq}) {
		return r.heap.pop().it
	}
	f.buf[f.head] = nil
	f.head++
	r.n--
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
