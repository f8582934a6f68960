package kafkajobs

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Fetch size: how many bytes one fetch request asks for per partition.
//
// A partition that flow control pauses (flow.go) loses the records kgo
// holds for it: kgo drops them and fetches them again once the partition
// is resumed, decoding every one a second time. With kgo's default of
// 1 MiB per partition and small, well-compressed jobs, one fetch held
// thousands of records of a partition whose local buffer takes
// partitionBuffer, and most of the consumer's CPU went into fetching and
// decoding records again.
//
// So the per-partition fetch size follows the records: about half a
// partition buffer's worth of records (by their average compressed size),
// but never less than an average batch (Kafka returns whole batches, and
// a partition whose first batch is over the limit gets nothing unless it
// comes first in the request) and never more than kgo's default. It
// changes only when the target moved by more than a quarter, so that the
// fetch requests do not change size at every batch.
const (
	// initialPartFetch is the per-partition fetch size before any batch
	// was read.
	initialPartFetch = 64 << 10
	// minPartFetch and maxPartFetch bound the per-partition fetch size
	// (maxPartFetch is kgo's default).
	minPartFetch = 4 << 10
	maxPartFetch = 1 << 20
	// fetchRecordsTarget is how many records one fetch should bring per
	// partition.
	fetchRecordsTarget = partitionBuffer / 2
	// sizeWeight is the weight of a new batch in the running averages.
	sizeWeight = 0.125
)

// fetchSizer keeps running averages of the compressed size of fetched
// records and batches (kgo's batch-read hook) and derives the
// per-partition fetch size from them.
type fetchSizer struct {
	mu         sync.Mutex
	recBytes   float64 // average compressed bytes per record
	batchBytes float64 // average compressed bytes per batch
	seen       bool
	cur        int32 // the size last handed to kgo
	// fetchMax is the whole fetch's limit (consumer_options.
	// max_fetch_message_size or kgo's default), which UpdateFetchMaxBytes
	// takes along and which also caps the per-partition size.
	fetchMax int32
}

var _ kgo.HookFetchBatchRead = (*fetchSizer)(nil)

// kgoFetchMaxBytes is kgo's default limit of a whole fetch.
const kgoFetchMaxBytes = 50 << 20

func newFetchSizer(cfg Config) *fetchSizer {
	s := &fetchSizer{fetchMax: kgoFetchMaxBytes}
	if m := cfg.ConsumerOptions.MaxFetchMessageSize; m > 0 {
		s.fetchMax = m
	}
	s.cur = min(initialPartFetch, s.fetchMax)
	return s
}

// OnFetchBatchRead implements kgo.HookFetchBatchRead.
func (s *fetchSizer) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	if m.NumRecords <= 0 || m.CompressedBytes <= 0 {
		return
	}
	rec := float64(m.CompressedBytes) / float64(m.NumRecords)
	batch := float64(m.CompressedBytes)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen {
		s.recBytes, s.batchBytes, s.seen = rec, batch, true
		return
	}
	s.recBytes += sizeWeight * (rec - s.recBytes)
	s.batchBytes += sizeWeight * (batch - s.batchBytes)
}

// next returns the per-partition fetch size to hand to kgo now and true,
// or false when the current one is still close enough to the target.
func (s *fetchSizer) next() (int32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen {
		return 0, false
	}
	target := max(s.recBytes*fetchRecordsTarget, s.batchBytes*1.25)
	t := min(int32(min(max(target, minPartFetch), maxPartFetch)), s.fetchMax)
	if t == s.cur {
		return 0, false
	}
	if ratio := float64(t) / float64(s.cur); ratio > 0.75 && ratio < 1.25 {
		return 0, false
	}
	s.cur = t
	return t, true
}

// resizeFetch hands kgo the per-partition fetch size that follows the
// records fetched so far (see fetchSizer), keeping the fetch's overall
// limit.
func (d *Driver) resizeFetch() {
	s := d.cons.sizer
	if t, ok := s.next(); ok {
		d.client.UpdateFetchMaxBytes(s.fetchMax, t)
	}
}
