package memjobs

import (
	"sort"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

var _ consumer.OldestReadyReporter = (*Queue)(nil)

// mark says that the jobs from seq on (up to the next mark) entered the
// ready order at at, in ns since Queue.start: one mark per Publish call
// and per batch of delayed jobs coming due, so a job's enqueue time costs
// no clock reading of its own.
type mark struct {
	seq uint64
	at  int64
}

// maxMarks bounds the marks kept. When they are full every other one is
// dropped (the first kept), so a job may then be dated to an earlier
// publish than its own: ages err on the old side.
const maxMarks = 1024

// markLocked records that seqs from seq on entered at at. Caller holds
// q.mu.
func (q *Queue) markLocked(seq uint64, at int64) {
	if len(q.marks) >= maxMarks {
		k := 0
		for i := 0; i < len(q.marks); i += 2 {
			q.marks[k] = q.marks[i]
			k++
		}
		q.marks = q.marks[:k]
	}
	q.marks = append(q.marks, mark{seq: seq, at: at})
}

// enqueuedLocked returns when the job of seq entered the ready order (its
// publish, or the end of its delay; a job handed back keeps its seq and
// so its first time), or the zero time when no mark covers it. Caller
// holds q.mu.
func (q *Queue) enqueuedLocked(seq uint64) time.Time {
	i := sort.Search(len(q.marks), func(i int) bool { return q.marks[i].seq > seq }) - 1
	if i < 0 {
		return time.Time{}
	}
	return q.start.Add(time.Duration(q.marks[i].at))
}

// OldestReady returns the enqueue time of the oldest job waiting to be
// received (ready; delayed jobs and those waiting behind their key are not
// counted), and false when none waits. It implements
// consumer.OldestReadyReporter. It scans the jobs handed back (Retry
// without delay, Release), which are few; the others are found in O(1)
// per priority.
func (q *Queue) OldestReady() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ready.len() == 0 {
		return time.Time{}, false
	}
	oldest, found := uint64(0), false
	for _, f := range q.ready.fifos {
		if f.head < len(f.buf) {
			if s := f.buf[f.head].seq(); !found || s < oldest {
				oldest, found = s, true
			}
		}
	}
	for _, e := range q.ready.heap.Entries() {
		if !found || e.K2 < oldest {
			oldest, found = e.K2, true
		}
	}
	if !found {
		return time.Time{}, false
	}
	at := q.enqueuedLocked(oldest)
	return at, !at.IsZero()
}
