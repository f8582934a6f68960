package memjobs

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// DeadListCap is how many dead jobs a Queue keeps; older ones are dropped
// first.
const DeadListCap = 10000

// DeadJob is a job that was settled with consumer.Dead.
type DeadJob struct {
	// Job is the job as it was last delivered: ID, Name, Pipeline,
	// Payload, Headers (with requeue headers merged), Priority and Key.
	Job      consumer.Job
	Reason   string    // Outcome.Reason
	Attempts int       // attempt number of the delivery that was dead-lettered
	At       time.Time // when it was dead-lettered

	seq uint64 // identifies the entry while the list changes
}

// addDead records it in the dead list. Caller holds q.mu.
func (q *Queue) addDead(it *item, reason string) {
	if len(q.dead) >= 2*DeadListCap {
		n := copy(q.dead, q.dead[len(q.dead)-DeadListCap+1:])
		clear(q.dead[n:])
		q.dead = q.dead[:n]
		q.log.Warn("dead list full, dropped the oldest dead jobs", "kept", DeadListCap)
	}
	q.dead = append(q.dead, DeadJob{
		Job: consumer.Job{
			ID:       strings.Clone(it.id), // not the pack's buffers
			Name:     it.name,
			Pipeline: q.name,
			Payload:  bytes.Clone(it.payload),
			Headers:  it.headers,
			Priority: it.prio,
			Key:      it.key(),
		},
		Reason:   consumer.TruncateReason(reason),
		Attempts: int(it.attempt),
		At:       time.Now(),
		seq:      q.nextDeadSeq(),
	})
}

// Dead returns a copy of the dead list, oldest first, at most DeadListCap
// jobs. It works on a closed queue too.
func (q *Queue) Dead() []DeadJob {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.dead
	if len(s) > DeadListCap {
		s = s[len(s)-DeadListCap:]
	}
	return slices.Clone(s)
}

// PurgeDead empties the dead list and returns how many jobs it held (at
// most DeadListCap).
func (q *Queue) PurgeDead() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.dead), DeadListCap)
	q.dead = nil
	return n
}
