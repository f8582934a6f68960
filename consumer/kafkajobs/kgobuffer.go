package kafkajobs

import (
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoBuffer follows, per partition, the records kgo fetched and holds in
// its buffer; kgo's fetch hooks keep it. Its lock is taken after
// consumerState.mu, never before.
//
// It keeps two views of them. The count (bufPart.n) is the records kgo
// holds, not polled yet: it drops when kgo unbuffers a record, as flow
// control needs (flow.go). The held records (bufPart.held) are those
// fetched and not yet filed into their partition's entries: a polled
// record leaves them only when ingest files it (take), under
// consumerState.mu, so that OldestReady always sees a fetched record in
// one place or the other.
type kgoBuffer struct {
	mu    sync.Mutex
	parts map[topicPartition]*bufPart
	// kick wakes a poller that waits for room when a partition gets
	// buffered records (capacity 1).
	kick chan struct{}
}

// bufPart is one partition's share of kgoBuffer.
type bufPart struct {
	n    int // records kgo holds, not polled yet
	held recQueue
}

var (
	_ kgo.HookFetchRecordBuffered   = (*kgoBuffer)(nil)
	_ kgo.HookFetchRecordUnbuffered = (*kgoBuffer)(nil)
)

func newKgoBuffer() *kgoBuffer {
	return &kgoBuffer{parts: make(map[topicPartition]*bufPart), kick: make(chan struct{}, 1)}
}

// OnFetchRecordBuffered implements kgo.HookFetchRecordBuffered.
func (b *kgoBuffer) OnFetchRecordBuffered(r *kgo.Record) {
	tp := topicPartition{r.Topic, r.Partition}
	b.mu.Lock()
	bp := b.parts[tp]
	if bp == nil {
		bp = &bufPart{}
		b.parts[tp] = bp
	}
	bp.n++
	first := bp.n == 1
	bp.held.push(r)
	b.mu.Unlock()
	if first {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// OnFetchRecordUnbuffered implements kgo.HookFetchRecordUnbuffered. A
// polled record stays held until ingest takes it; a discarded one (kgo
// dropped it, for a pause or a lost assignment) goes at once.
func (b *kgoBuffer) OnFetchRecordUnbuffered(r *kgo.Record, polled bool) {
	tp := topicPartition{r.Topic, r.Partition}
	b.mu.Lock()
	defer b.mu.Unlock()
	bp := b.parts[tp]
	if bp == nil {
		return
	}
	if bp.n > 0 {
		bp.n--
	}
	if !polled {
		bp.held.remove(r)
	}
	b.dropIfEmptyLocked(tp, bp)
}

// take forgets the polled records rs of tp, which ingest filed into
// their partition's entries. Called with consumerState.mu held.
func (b *kgoBuffer) take(tp topicPartition, rs []*kgo.Record) {
	if len(rs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bp := b.parts[tp]
	if bp == nil {
		return
	}
	for _, r := range rs {
		bp.held.remove(r)
	}
	b.dropIfEmptyLocked(tp, bp)
}

func (b *kgoBuffer) dropIfEmptyLocked(tp topicPartition, bp *bufPart) {
	if bp.n == 0 && bp.held.len() == 0 {
		delete(b.parts, tp)
	}
}

// counts returns the per-partition counts of records kgo holds.
func (b *kgoBuffer) counts() map[topicPartition]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[topicPartition]int, len(b.parts))
	for tp, bp := range b.parts {
		if bp.n > 0 {
			out[tp] = bp.n
		}
	}
	return out
}

// heldCounts returns the per-partition numbers of held records (fetched,
// not filed into entries yet).
func (b *kgoBuffer) heldCounts() map[topicPartition]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[topicPartition]int, len(b.parts))
	for tp, bp := range b.parts {
		if n := bp.held.len(); n > 0 {
			out[tp] = n
		}
	}
	return out
}

// recQueue is a partition's held records in the order kgo buffered them
// (offset order). Records normally leave from the front; remove finds
// one elsewhere by a scan.
type recQueue struct {
	recs []*kgo.Record
	head int
}

func (q *recQueue) len() int { return len(q.recs) - q.head }

// live returns the held records, front first. The slice is valid until
// the next change of q.
func (q *recQueue) live() []*kgo.Record { return q.recs[q.head:] }

func (q *recQueue) push(r *kgo.Record) {
	if q.head > 0 && q.head >= len(q.recs)/2 && len(q.recs) == cap(q.recs) {
		// Reuse the dead front instead of growing.
		n := copy(q.recs, q.recs[q.head:])
		clear(q.recs[n:])
		q.recs, q.head = q.recs[:n], 0
	}
	q.recs = append(q.recs, r)
}

// remove drops r (by identity) if q holds it.
func (q *recQueue) remove(r *kgo.Record) {
	switch {
	case q.head < len(q.recs) && q.recs[q.head] == r:
		q.recs[q.head] = nil
		q.head++
	default:
		i := slices.Index(q.recs[q.head:], r)
		if i < 0 {
			return
		}
		q.recs = slices.Delete(q.recs, q.head+i, q.head+i+1)
	}
	if q.head == len(q.recs) {
		q.recs, q.head = q.recs[:0], 0
	}
}
