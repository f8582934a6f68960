package memjobs

import (
	"encoding/binary"
	"time"

	"github.com/google/uuid"

	"github.com/pipevisor/pipevisor/consumer"
)

// batch is a Publish call's jobs made ready to queue, in publish order:
// plain jobs (no key, no delay) in packs, one per run of a priority, and
// every other job, or a job published alone, as an item. Seqs are relative to the batch (job i has
// seq i+1) until Publish adds the queue's seq under its lock.
type batch struct {
	ops      []publishOp
	hasDelay bool
}

// publishOp is one pack, or one keyed or delayed job with its key and
// delay.
type publishOp struct {
	pack  *pack
	it    *item
	key   string
	delay time.Duration
}

// encode turns jobs into a batch. It runs outside the queue's lock.
func (q *Queue) encode(jobs []consumer.Job) batch {
	var b batch
	nItems, dataHint, idsHint := 0, 0, 0
	// A job published alone is an item here: a pack of its own would cost
	// more than it saves. Publish appends it to an open pack when a
	// backlog builds up (readySet.pushAlone).
	alone := len(jobs) == 1
	for i := range jobs {
		j := &jobs[i]
		if alone || j.Key != "" || j.Delay > 0 {
			nItems++
			b.hasDelay = b.hasDelay || j.Delay > 0
			continue
		}
		dataHint += recordSizeHint(j)
		if j.ID == "" {
			idsHint += 36 // a UUID
		} else {
			idsHint += len(j.ID)
		}
	}
	var slab []item
	if nItems > 0 {
		slab = make([]item, 0, nItems)
	}
	// open holds the packs being built, by priority; a keyed or delayed
	// job closes the pack of its priority, so that every FIFO receives
	// its jobs in seq order.
	var open []*packBuilder
	closeOpen := func(prio int64) {
		for k, pb := range open {
			if pb.p.prio == prio {
				b.ops = append(b.ops, publishOp{pack: pb.finish()})
				open = append(open[:k], open[k+1:]...)
				return
			}
		}
	}
	for i := range jobs {
		j := &jobs[i]
		prio := j.Priority
		if prio == 0 {
			prio = q.cfg.Priority
		}
		id := j.ID
		if id == "" {
			id = uuid.NewString()
		}
		seq := uint64(i + 1)
		if alone || j.Key != "" || j.Delay > 0 {
			closeOpen(prio)
			slab = append(slab, item{id: id, name: j.Name, payload: j.Payload, headers: j.Headers,
				prio: prio, seq: seq, attempt: 1, autoAck: j.AutoAck})
			b.ops = append(b.ops, publishOp{it: &slab[len(slab)-1], key: j.Key, delay: j.Delay})
			continue
		}
		var pb *packBuilder
		for _, o := range open {
			if o.p.prio == prio {
				pb = o
				break
			}
		}
		if pb == nil {
			pb = newPackBuilder(prio, dataHint, idsHint)
			dataHint, idsHint = 0, 0 // the first pack of the batch gets the hint
			open = append(open, pb)
		}
		pb.add(seq, id, j.Name, j.Payload, j.Headers, j.AutoAck)
	}
	for _, pb := range open {
		b.ops = append(b.ops, publishOp{pack: pb.finish()})
	}
	return b
}

// recordSizeHint is about the size of a plain job's record in a pack.
func recordSizeHint(j *consumer.Job) int {
	n := 4 + uvarintLen(len(j.Payload)) + len(j.Payload) // flags, seq delta, id length, name index
	if len(j.Headers) > 0 {
		n++
		for k, vs := range j.Headers {
			n += 2 + len(k)
			for _, v := range vs {
				n += 1 + len(v)
			}
		}
	}
	return n
}

func uvarintLen(n int) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], uint64(n))
}
