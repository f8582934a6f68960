package boltjobs

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pipevisor/pipevisor/consumer"
)

// DeadListCap is how many dead jobs a pipeline keeps in its dead bucket;
// older ones are deleted first.
const DeadListCap = 10000

// DeadJob is a job that was settled with consumer.Dead.
type DeadJob struct {
	// Job is the job as it was last delivered: ID, Name, Pipeline,
	// Payload, Headers (with requeue headers merged), Priority and Key.
	Job      consumer.Job
	Reason   string    // Outcome.Reason
	Attempts int       // attempt number of the delivery that was dead-lettered
	At       time.Time // when it was dead-lettered
}

// Dead returns the dead jobs the file holds for the pipeline, oldest
// first, once every change settled so far is committed. It fails after
// Close.
func (q *Queue) Dead(ctx context.Context) ([]DeadJob, error) {
	q.mu.Lock()
	if q.st == closed {
		q.mu.Unlock()
		return nil, fmt.Errorf("boltjobs: dead jobs of %q: %w", q.name, consumer.ErrClosed)
	}
	w := q.s.enqueue()
	q.mu.Unlock()
	if _, err := w.wait(ctx); err != nil {
		return nil, err
	}
	var out []DeadJob
	err := q.s.db.View(func(tx *bolt.Tx) error {
		out = readDead(tx, q.name)
		return nil
	})
	return out, err
}

// readDead decodes the dead bucket of pipeline name; records that do not
// decode were reported when the file was opened and are skipped.
func readDead(tx *bolt.Tx, name string) []DeadJob {
	b := tx.Bucket([]byte(name))
	if b == nil {
		return nil
	}
	d := b.Bucket(bucketDead)
	if d == nil {
		return nil
	}
	var out []DeadJob
	c := d.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := decodeDeadRecord(v)
		if err != nil {
			continue
		}
		out = append(out, DeadJob{
			Job: consumer.Job{ID: r.rec.id, Name: r.rec.name, Pipeline: name, Payload: r.rec.payload,
				Headers: r.rec.headers, Priority: r.rec.prio, Key: r.rec.key},
			Reason:   r.reason,
			Attempts: int(r.rec.attempt),
			At:       time.Unix(0, r.at),
		})
	}
	return out
}

// ReadDead opens the database file at path read-only (it must not be open
// elsewhere: bbolt's lock) and returns the dead jobs of pipeline, oldest
// first: for tools and tests that look at a file the supervisor is not
// running.
func ReadDead(path, pipeline string) ([]DeadJob, error) {
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("boltjobs: file %s: %w", path, err)
	}
	defer db.Close()
	var out []DeadJob
	err = db.View(func(tx *bolt.Tx) error {
		out = readDead(tx, pipeline)
		return nil
	})
	return out, err
}

// PurgeDead deletes every dead job of the pipeline and returns how many
// there were, once that is committed.
func (q *Queue) PurgeDead(ctx context.Context) (int, error) {
	q.mu.Lock()
	if q.st == closed {
		q.mu.Unlock()
		return 0, fmt.Errorf("boltjobs: purge dead jobs of %q: %w", q.name, consumer.ErrClosed)
	}
	n := q.deadN
	q.deadN = 0
	w := q.s.enqueue(op{q: q, kind: opPurge})
	q.mu.Unlock()
	_, err := w.wait(ctx)
	return n, err
}
