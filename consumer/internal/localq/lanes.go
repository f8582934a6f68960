package localq

// Lanes holds the jobs that have an ordering key, one lane per key: the
// head of a lane is the one job of its key that may be ready, delayed or
// handed out; the others wait behind it in publish order, and the next
// one goes only once the head is done (acked, dead or auto-acked). The
// zero value is not usable: call Init. It needs the Core's mutex held.
type Lanes[T any] struct {
	byKey    map[string]*Lane[T]
	pendingN int // jobs waiting behind a head
}

// Lane is the jobs of one key.
type Lane[T any] struct {
	Key     string
	pending []pend[T]
	off     int // index of the first pending job
}

// pend is a job waiting behind its lane's head, with the due time it was
// published with (the driver's clock; 0: none).
type pend[T any] struct {
	it  T
	due int64
}

// Init makes ls empty.
func (ls *Lanes[T]) Init() { ls.byKey = make(map[string]*Lane[T]) }

// Pending is the number of jobs waiting behind a lane's head.
func (ls *Lanes[T]) Pending() int { return ls.pendingN }

// Join adds it, a job of key published with due time due, to its lane
// and returns the lane. head is true when it heads a new lane, and is for
// the driver to schedule; false when it waits behind the lane's head (the
// driver marks it Pending), until Next hands it back.
func (ls *Lanes[T]) Join(key string, it T, due int64) (l *Lane[T], head bool) {
	if l := ls.byKey[key]; l != nil {
		l.pending = append(l.pending, pend[T]{it: it, due: due})
		ls.pendingN++
		return l, false
	}
	l = &Lane[T]{Key: key}
	ls.byKey[key] = l
	return l, true
}

// Next is called when the head of l is done. It returns the job now at
// the head, with the due time it joined with, for the driver to schedule;
// ok is false when none was waiting (the lane is then dropped, and the
// key free).
func (ls *Lanes[T]) Next(l *Lane[T]) (next T, due int64, ok bool) {
	if l.off == len(l.pending) {
		delete(ls.byKey, l.Key)
		return next, 0, false
	}
	p := l.pending[l.off]
	l.pending[l.off] = pend[T]{}
	l.off++
	ls.pendingN--
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
	return p.it, p.due, true
}
