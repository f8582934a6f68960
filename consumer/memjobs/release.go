package memjobs

import (
	"runtime/debug"
	"time"
)

// A queue that empties after a burst, at least releaseAfterJobs jobs or
// releaseAfterBytes payload bytes published since it was last empty,
// returns the memory they held to the operating system (a forced garbage
// collection, debug.FreeOSMemory) releaseDelay later. Without it the Go
// runtime keeps the freed heap until its next collection, which an idle
// supervisor may not run for minutes, and sizes its heap goal by the
// burst: 200k queued jobs left the supervisor at several times its idle
// RSS long after they were done. The delay lets the caller that settled
// the last job drop its delivery, which keeps the whole pack the job came
// in alive. The check costs two additions per published job and a few
// comparisons per settled one; the collection runs at most once per
// releaseDelay, on a timer, never under the queue's lock.
const (
	releaseAfterJobs        = 20_000
	releaseAfterBytes int64 = 32 << 20
	releaseDelay            = 500 * time.Millisecond
)

// burst counts what was published since the queue was last empty.
type burst struct {
	jobs  int
	bytes int64
}

// add counts published jobs. Caller holds q.mu.
func (b *burst) add(jobs int, bytes int64) {
	b.jobs += jobs
	b.bytes += bytes
}

// releaseIfDrained schedules the return of memory when the queue is now
// empty (nothing ready, delayed, waiting behind a key or handed out)
// after a burst, and starts counting the next burst once it is empty.
// Caller holds q.mu.
func (q *Queue) releaseIfDrained() {
	if q.core.Active() > 0 || q.ready.len() > 0 || q.delayed.Len() > 0 || q.lanes.Pending() > 0 {
		return
	}
	big := q.burst.jobs >= releaseAfterJobs || q.burst.bytes >= releaseAfterBytes
	q.burst = burst{}
	if big && q.release == nil && q.core.IsOpen() {
		q.release = time.AfterFunc(releaseDelay, q.releaseNow)
	}
}

// releaseNow returns the memory of a drained burst to the operating
// system, unless the queue is closing.
func (q *Queue) releaseNow() {
	q.mu.Lock()
	q.release = nil
	if !q.core.IsOpen() {
		q.mu.Unlock()
		return
	}
	q.releasing.Add(1)
	q.mu.Unlock()
	defer q.releasing.Done()
	if q.freeOSMemory != nil {
		q.freeOSMemory()
		return
	}
	debug.FreeOSMemory()
}

// stopRelease cancels a pending return of memory and waits for one that
// is running. Close calls it, without q.mu, once the queue is no longer
// open.
func (q *Queue) stopRelease() {
	q.mu.Lock()
	if q.release != nil {
		q.release.Stop()
		q.release = nil
	}
	q.mu.Unlock()
	q.releasing.Wait()
}
