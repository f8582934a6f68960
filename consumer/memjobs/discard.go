package memjobs

// warnDiscarded logs, once the queue is closed, a warning with the number
// of jobs it still holds (ready, waiting behind their key, delayed, or
// handed out and never settled): the memory driver keeps nothing across a
// restart, so they are dropped with the process.
func (q *Queue) warnDiscarded() {
	q.mu.Lock()
	n := q.ready.len() + q.lanes.Pending() + q.delayed.Len() + q.core.Active()
	q.mu.Unlock()
	if n > 0 {
		q.log.Warn("stopped with jobs queued in memory: they are discarded (driver: boltdb keeps them across restarts)", "jobs", n)
	}
}
