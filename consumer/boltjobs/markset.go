package boltjobs

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// markSet is the running marks of the jobs one commit marks: one record
// of the pipeline's marks bucket, keyed by the set's id, listing each
// job's sequence number with the attempt it was marked at. A mark counts
// at open only while its job's record is there with that attempt, so an
// Ack or a Dead (which delete the record) and a Retry or a Requeue (which
// rewrite it with the next attempt) void it without writing the set; a
// mark that must stop counting while its job stays as it is (a Release,
// Pause, Close) has its set rewritten without it, and a set with no mark
// left is deleted. One record per commit instead of one key per job keeps
// the writes of the marks small next to the jobs' own.
type markSet struct {
	id    uint64
	its   []*item // the marked jobs; nil where a job left the set
	att   []int32 // the attempt each was marked at
	live  int     // jobs still in the set
	dirty bool    // in the dirty list of dropMarks
}

// newMarkSet puts its, just marked, in a new set and returns the op that
// writes it. Caller holds q.mu.
func (q *Queue) newMarkSet(ops []op, its []*item) []op {
	if len(its) == 0 {
		return ops
	}
	q.setID++
	s := &markSet{id: q.setID, its: slices.Clone(its), att: make([]int32, len(its)), live: len(its)}
	for i, it := range its {
		it.set, it.setIdx = s, i
		s.att[i] = it.rec.attempt
	}
	return append(ops, op{q: q, kind: opPutMarks, seq: s.id, val: s.encode()})
}

// dropMarks takes its out of their sets (their marks become markNone) and
// appends the ops that follow: a set left with no mark is deleted; when
// stays is set (the jobs remain in the file at the attempt they were
// marked at, so their marks would still count) the other sets are
// rewritten without them. Caller holds q.mu.
func (q *Queue) dropMarks(ops []op, stays bool, its ...*item) []op {
	var dirty []*markSet
	for _, it := range its {
		it.mark = markNone
		s := it.set
		if s == nil {
			continue
		}
		it.set = nil
		s.its[it.setIdx] = nil
		s.live--
		if !s.dirty {
			s.dirty = true
			dirty = append(dirty, s)
		}
	}
	for _, s := range dirty {
		s.dirty = false
		switch {
		case s.live == 0:
			ops = append(ops, op{q: q, kind: opDelMarks, seq: s.id})
		case stays:
			ops = append(ops, op{q: q, kind: opPutMarks, seq: s.id, val: s.encode()})
		}
	}
	return ops
}

// encode returns the set's record: the number of marks, then each job's
// sequence number (as the difference to the one before) and attempt.
func (s *markSet) encode() []byte {
	dst := make([]byte, 0, 2+s.live*(binary.MaxVarintLen32+2))
	dst = binary.AppendUvarint(dst, uint64(s.live))
	var prev uint64
	for i, it := range s.its {
		if it == nil {
			continue
		}
		dst = binary.AppendVarint(dst, int64(it.seq-prev))
		dst = binary.AppendUvarint(dst, uint64(s.att[i]))
		prev = it.seq
	}
	return dst
}

// markKey is one mark of a set record: a job and the attempt it was
// marked at.
type markKey struct {
	seq     uint64
	attempt int32
}

// decodeMarkSet adds the marks of the set record b to into.
func decodeMarkSet(b []byte, into map[markKey]bool) error {
	d := decoder{b: b}
	n := d.uvarint()
	if n > uint64(len(b)) {
		return fmt.Errorf("%w: %d marks in %d bytes", errBadRecord, n, len(b))
	}
	var seq uint64
	for range n {
		seq += uint64(d.varint())
		a := d.uvarint()
		if d.err != nil {
			return d.err
		}
		into[markKey{seq: seq, attempt: int32(a)}] = true
	}
	if d.err == nil && len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.b))
	}
	return d.err
}
