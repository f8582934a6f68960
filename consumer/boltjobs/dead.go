package boltjobs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pipevisor/pipevisor/consumer"
)

// DeadListCap is how many dead jobs a pipeline keeps in its dead bucket;
// the ones of the oldest jobs are deleted first.
const DeadListCap = 10000

var _ consumer.DeadStore = (*Queue)(nil)

// deadEntry is one record of the dead bucket and its key.
type deadEntry struct {
	seq uint64
	rec deadRecord
}

// readDeadBucket decodes the dead bucket of pipeline name, oldest death
// first; records that do not decode were reported when the file was
// opened and are skipped.
func readDeadBucket(tx *bolt.Tx, name string) []deadEntry {
	b := tx.Bucket([]byte(name))
	if b == nil {
		return nil
	}
	d := b.Bucket(bucketDead)
	if d == nil {
		return nil
	}
	var out []deadEntry
	c := d.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		seq, ok := keySeq(k)
		r, err := decodeDeadRecord(v)
		if !ok || err != nil {
			continue
		}
		out = append(out, deadEntry{seq: seq, rec: r})
	}
	slices.SortStableFunc(out, func(a, b deadEntry) int { return cmp.Compare(a.rec.at, b.rec.at) })
	return out
}

func (e *deadEntry) toConsumer(pipeline string) consumer.DeadJob {
	r := &e.rec.rec
	return consumer.DeadJob{
		Job: consumer.Job{ID: r.id, Name: r.name, Pipeline: pipeline, Payload: r.payload,
			Headers: r.headers, Priority: r.prio, Key: r.key},
		Reason:   e.rec.reason,
		Attempts: int(r.attempt),
		At:       time.Unix(0, e.rec.at),
	}
}

// deadEntries commits every change settled so far and reads the dead
// bucket. It fails after Close.
func (q *Queue) deadEntries(ctx context.Context) ([]deadEntry, error) {
	q.mu.Lock()
	if q.core.IsClosed() {
		q.mu.Unlock()
		return nil, q.core.ErrClosed("dead jobs of")
	}
	w := q.s.enqueue()
	q.mu.Unlock()
	if _, err := w.wait(ctx); err != nil {
		return nil, err
	}
	var out []deadEntry
	err := q.s.db.View(func(tx *bolt.Tx) error {
		out = readDeadBucket(tx, q.name)
		return nil
	})
	return out, err
}

// ListDead returns the pipeline's dead jobs from its file, oldest death
// first, at most limit when limit > 0 (consumer.DeadStore).
func (q *Queue) ListDead(ctx context.Context, limit int) ([]consumer.DeadJob, error) {
	es, err := q.deadEntries(ctx)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(es) > limit {
		es = es[:limit]
	}
	out := make([]consumer.DeadJob, len(es))
	for i := range es {
		out[i] = es[i].toConsumer(q.name)
	}
	return out, nil
}

// RetryDead puts the selected dead jobs back on the pipeline as attempt 1,
// behind the jobs queued now, with their ids, names, payloads, headers,
// priorities and keys (consumer.DeadStore). Each job leaves the dead
// bucket and enters the queue in the same commit: it is never in both,
// nor in neither. It returns once that commit is fsynced.
func (q *Queue) RetryDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	return q.changeDead(ctx, sel, true)
}

// RemoveDead deletes the selected dead jobs from the file and returns
// their ids once that is fsynced (consumer.DeadStore).
func (q *Queue) RemoveDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	return q.changeDead(ctx, sel, false)
}

// changeDead removes the selected dead jobs, and with retry queues them
// again. Dead-store operations of one queue run one at a time.
func (q *Queue) changeDead(ctx context.Context, sel consumer.DeadSelection, retry bool) ([]string, error) {
	q.deadOps.Lock()
	defer q.deadOps.Unlock()
	es, err := q.deadEntries(ctx)
	if err != nil {
		return nil, err
	}
	var (
		ids   []string
		ops   []op
		items []item
	)
	for _, e := range es {
		if !sel.Has(e.rec.rec.id) {
			continue
		}
		ids = append(ids, e.rec.rec.id)
		ops = append(ops, op{q: q, kind: opRemoveDead, seq: e.seq})
		if retry {
			r := e.rec.rec
			r.attempt, r.due, r.enq = 1, 0, now()
			items = append(items, item{rec: r})
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	q.mu.Lock()
	if !q.core.IsOpen() {
		q.mu.Unlock()
		return nil, q.core.ErrClosed("failed jobs of")
	}
	for i := range items {
		it := &items[i]
		q.seq++
		it.seq, it.pos = q.seq, q.seq
		ops = append(ops, op{q: q, kind: opPut, seq: it.seq, val: it.rec.encode(nil)})
	}
	q.deadN -= len(ids)
	var after func()
	if retry {
		after = func() { q.placeCommitted(items) }
	}
	w := q.s.enqueueAfter(after, ops...)
	q.mu.Unlock()
	if inDoubt, err := w.wait(ctx); err != nil {
		if inDoubt {
			return nil, fmt.Errorf("boltjobs: failed jobs of %q: %w: %w", q.name, consumer.ErrInDoubt, err)
		}
		return nil, fmt.Errorf("boltjobs: failed jobs of %q: %w", q.name, err)
	}
	return ids, nil
}

// ReadDead opens the database file at path read-only (no supervisor may
// hold it: bbolt's lock) and returns the dead jobs of pipeline, oldest
// death first: for tools and tests that look at a file not in use.
func ReadDead(path, pipeline string) ([]consumer.DeadJob, error) {
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("boltjobs: file %s: %w", path, err)
	}
	defer db.Close()
	var es []deadEntry
	err = db.View(func(tx *bolt.Tx) error {
		es = readDeadBucket(tx, pipeline)
		return nil
	})
	out := make([]consumer.DeadJob, len(es))
	for i := range es {
		out[i] = es[i].toConsumer(pipeline)
	}
	return out, err
}
