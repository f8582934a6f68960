package boltjobs

import (
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

var _ consumer.OldestReadyReporter = (*Queue)(nil)

// OldestReady returns the enqueue time of the oldest job waiting to be
// received, and false when none waits (consumer.OldestReadyReporter). A
// job's enqueue time is its push, or the end of its latest delay; it is
// kept in the file, so after a restart it is still the original one.
// Delayed jobs whose time has come count as waiting; jobs still delayed,
// waiting behind their key or handed out do not. It scans the ready jobs
// under the queue's lock: O(ready jobs), for a metrics scrape.
func (q *Queue) OldestReady() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.delayed.Len() > 0 {
		q.promoteDue(now())
	}
	var oldest int64
	for _, h := range []*itemHeap{&q.ready, &q.ahead} {
		for _, e := range h.Entries() {
			if at := e.Item.rec.enq; at != 0 && (oldest == 0 || at < oldest) {
				oldest = at
			}
		}
	}
	if oldest == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, oldest), true
}
