package boltjobs

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/pipevisor/pipevisor/consumer/internal/localq"
)

// openQueue creates the pipeline's buckets when missing, loads its jobs
// and registers the queue with the writer. A job that was handed out (or
// marked ahead) when the file was last written gets its attempt counted:
// its running mark is there, in a mark set at the attempt its record has
// (see markSet), or in the running bucket of an earlier version; every
// mark is then cleared. Caller holds the Files lock.
func (s *store) openQueue(name string, cfg Config, log *slog.Logger) (*Queue, error) {
	if name == "" {
		return nil, fmt.Errorf("boltjobs: file %s: a pipeline needs a name", s.path)
	}
	s.mu.Lock()
	inUse := s.queues[name] != nil
	s.mu.Unlock()
	if inUse {
		return nil, fmt.Errorf("boltjobs: file %s: pipeline %q: %w", s.path, name, ErrInUse)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queue{
		name: name,
		cfg:  cfg,
		log:  log.With("file", s.path),
		s:    s,
	}
	q.core.Init(&q.mu, localq.Config{Prefix: "boltjobs", Driver: Driver, Name: name,
		Priority: cfg.Priority, Prefetch: cfg.Prefetch})
	q.lanes.Init()
	recs, seqs, err := s.load(name, q)
	if err != nil {
		return nil, err
	}
	t := now()
	items := make([]item, len(recs))
	for i := range recs {
		it := &items[i]
		it.rec, it.seq, it.pos = recs[i], seqs[i], seqs[i]
		if it.rec.enq == 0 { // a version 1 record: dated from its due time, else from now
			it.rec.enq = it.rec.due
			if it.rec.enq == 0 {
				it.rec.enq = t
			}
		}
		q.place(it, t)
	}
	s.mu.Lock()
	s.queues[name] = q
	s.refs++
	s.mu.Unlock()
	if len(recs) > 0 || q.deadN > 0 {
		q.log.Info("loaded jobs from the database", "jobs", len(recs), "dead", q.deadN)
	}
	return q, nil
}

// load reads the pipeline's jobs in sequence order, counting the attempt
// of those marked running, and sets q.seq and q.deadN. A record that does
// not decode, or a panic or memory fault inside bbolt (a garbled page),
// is an error wrapping ErrCorrupt that names the file.
func (s *store) load(name string, q *Queue) (recs []record, seqs []uint64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			recs, seqs = nil, nil
			err = fmt.Errorf("boltjobs: file %s: pipeline %q: %w (%v)", s.path, name, ErrCorrupt, r)
		}
	}()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(name))
		if err != nil {
			return err
		}
		var bs [4]*bolt.Bucket
		for i, n := range [][]byte{bucketJobs, bucketRunning, bucketMarks, bucketDead} {
			if bs[i], err = b.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		jobs, running, marks, dead := bs[0], bs[1], bs[2], bs[3]
		marked := map[markKey]bool{}
		mc := marks.Cursor()
		for k, v := mc.First(); k != nil; k, v = mc.Next() {
			if err := decodeMarkSet(v, marked); err != nil {
				return fmt.Errorf("%w: running marks %x: %w", ErrCorrupt, k, err)
			}
		}
		var rewrite []uint64
		c := jobs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq, ok := keySeq(k)
			if !ok {
				return fmt.Errorf("%w: key %x is not a sequence number", ErrCorrupt, k)
			}
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("%w: job %d: %w", ErrCorrupt, seq, err)
			}
			if running.Get(k) != nil || marked[markKey{seq: seq, attempt: r.attempt}] {
				r.attempt++
				rewrite = append(rewrite, seq)
			}
			recs = append(recs, r)
			seqs = append(seqs, seq)
		}
		for _, seq := range rewrite {
			i, _ := slices.BinarySearch(seqs, seq)
			if err := jobs.Put(seqKey(seq), recs[i].encode(nil)); err != nil {
				return err
			}
		}
		for _, n := range [][]byte{bucketRunning, bucketMarks} {
			if b.Bucket(n).Stats().KeyN == 0 {
				continue
			}
			if err := b.DeleteBucket(n); err != nil {
				return err
			}
			if _, err := b.CreateBucket(n); err != nil {
				return err
			}
		}
		dc := dead.Cursor()
		for k, v := dc.First(); k != nil; k, v = dc.Next() {
			if _, err := decodeDeadRecord(v); err != nil {
				return fmt.Errorf("%w: dead job %x: %w", ErrCorrupt, k, err)
			}
			q.deadN++
		}
		if len(seqs) > 0 {
			q.seq = seqs[len(seqs)-1]
		}
		if k, _ := dc.Last(); k != nil {
			if seq, ok := keySeq(k); ok && seq > q.seq {
				q.seq = seq
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("boltjobs: file %s: pipeline %q: %w", s.path, name, err)
	}
	return recs, seqs, nil
}
