package memjobs

import (
	"context"
	"fmt"
	"maps"

	"github.com/pipevisor/pipevisor/consumer"
)

var _ consumer.DeadStore = (*Queue)(nil)

// nextDeadSeq returns a new dead entry's seq. Caller holds q.mu.
func (q *Queue) nextDeadSeq() uint64 {
	q.deadSeq++
	return q.deadSeq
}

// deadView returns the entries of the dead list that count (the newest
// DeadListCap). Caller holds q.mu.
func (q *Queue) deadView() []DeadJob {
	s := q.dead
	if len(s) > DeadListCap {
		s = s[len(s)-DeadListCap:]
	}
	return s
}

// toConsumer returns d as a consumer.DeadJob with its own header map.
func (d *DeadJob) toConsumer() consumer.DeadJob {
	j := d.Job
	j.Headers = maps.Clone(j.Headers)
	return consumer.DeadJob{Job: j, Reason: d.Reason, Attempts: d.Attempts, At: d.At}
}

// ListDead returns the dead list, oldest first, at most limit jobs when
// limit > 0 (the oldest ones). It works on a closed queue too.
func (q *Queue) ListDead(ctx context.Context, limit int) ([]consumer.DeadJob, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.deadView()
	if limit > 0 && len(s) > limit {
		s = s[:limit]
	}
	out := make([]consumer.DeadJob, len(s))
	for i := range s {
		out[i] = s[i].toConsumer()
	}
	return out, nil
}

// selectDead returns copies of the selected entries. Caller holds q.mu.
func (q *Queue) selectDead(sel consumer.DeadSelection) []DeadJob {
	var out []DeadJob
	for _, d := range q.deadView() {
		if sel.Has(d.Job.ID) {
			out = append(out, d)
		}
	}
	return out
}

// dropDead deletes the entries whose seq is in seqs. Caller holds q.mu.
func (q *Queue) dropDead(seqs map[uint64]bool) {
	kept := q.dead[:0]
	for _, d := range q.dead {
		if !seqs[d.seq] {
			kept = append(kept, d)
		}
	}
	clear(q.dead[len(kept):])
	q.dead = kept
}

// RetryDead publishes the selected dead jobs to the queue again as
// attempt 1, oldest first, with their ids, headers, priorities and keys,
// then deletes them from the dead list. A memory publish is never in
// doubt: when it fails (the queue is closed) nothing was queued and the
// dead list is unchanged.
func (q *Queue) RetryDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	q.deadOps.Lock()
	defer q.deadOps.Unlock()
	q.mu.Lock()
	picked := q.selectDead(sel)
	q.mu.Unlock()
	if len(picked) == 0 {
		return nil, ctx.Err()
	}
	jobs := make([]consumer.Job, len(picked))
	seqs := make(map[uint64]bool, len(picked))
	ids := make([]string, len(picked))
	for i := range picked {
		jobs[i] = picked[i].toConsumer().Job
		seqs[picked[i].seq] = true
		ids[i] = picked[i].Job.ID
	}
	if err := q.Publish(ctx, jobs); err != nil {
		return nil, fmt.Errorf("memjobs: retry failed jobs of %q: %w", q.name, err)
	}
	q.mu.Lock()
	q.dropDead(seqs)
	q.mu.Unlock()
	return ids, nil
}

// RemoveDead deletes the selected dead jobs and returns their ids.
func (q *Queue) RemoveDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.deadOps.Lock()
	defer q.deadOps.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	picked := q.selectDead(sel)
	seqs := make(map[uint64]bool, len(picked))
	ids := make([]string, len(picked))
	for i := range picked {
		seqs[picked[i].seq] = true
		ids[i] = picked[i].Job.ID
	}
	if sel.All {
		q.dead = nil // also the entries past DeadListCap
	} else {
		q.dropDead(seqs)
	}
	return ids, nil
}
