package kafkajobs

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func feedBatches(s *fetchSizer, n, records, bytes int) {
	for range n {
		s.OnFetchBatchRead(kgo.BrokerMetadata{}, "t", 0, kgo.FetchBatchMetrics{NumRecords: records, CompressedBytes: bytes, UncompressedBytes: 4 * bytes})
	}
}

func TestFetchSizerFollowsRecordSize(t *testing.T) {
	s := newFetchSizer(Config{})
	if s.cur != initialPartFetch {
		t.Fatalf("initial size %d, want %d", s.cur, initialPartFetch)
	}
	if _, ok := s.next(); ok {
		t.Fatal("size changed before any batch was read")
	}

	// Small, well-compressed records in batches of 100: half a partition
	// buffer of records is 256*40 = 10240 bytes, more than 1.25 batches.
	feedBatches(s, 1, 100, 100*40)
	got, ok := s.next()
	if want := int32(fetchRecordsTarget * 40); !ok || got != want {
		t.Fatalf("next() = %d, %v; want %d, true", got, ok, want)
	}
	// A batch of the same shape changes nothing.
	feedBatches(s, 1, 100, 100*40)
	if got, ok := s.next(); ok {
		t.Fatalf("next() = %d after an unchanged batch, want no change", got)
	}

	// Big batches of tiny records: at least 1.25 average batches.
	s = newFetchSizer(Config{})
	feedBatches(s, 1, 8000, 8000*10)
	if got, ok := s.next(); !ok || got != 100000 {
		t.Fatalf("next() = %d, %v; want 100000 (1.25 batches), true", got, ok)
	}

	// Tiny records in tiny batches: not below minPartFetch.
	s = newFetchSizer(Config{})
	feedBatches(s, 1, 1, 5)
	if got, ok := s.next(); !ok || got != minPartFetch {
		t.Fatalf("next() = %d, %v; want %d, true", got, ok, minPartFetch)
	}

	// Big records: capped at maxPartFetch, and at the whole fetch's limit.
	s = newFetchSizer(Config{})
	feedBatches(s, 1, 1, 100<<10)
	if got, ok := s.next(); !ok || got != maxPartFetch {
		t.Fatalf("next() = %d, %v; want %d, true", got, ok, maxPartFetch)
	}
	var cfg Config
	cfg.ConsumerOptions.MaxFetchMessageSize = 200 << 10
	s = newFetchSizer(cfg)
	feedBatches(s, 1, 1, 100<<10)
	if got, ok := s.next(); !ok || got != 200<<10 {
		t.Fatalf("next() = %d, %v; want %d (max_fetch_message_size), true", got, ok, 200<<10)
	}
}

func TestFetchSizerMovesGradually(t *testing.T) {
	s := newFetchSizer(Config{})
	feedBatches(s, 1, 100, 100*100) // 100 bytes a record: 25600
	if got, ok := s.next(); !ok || got != fetchRecordsTarget*100 {
		t.Fatalf("next() = %d, %v; want %d, true", got, ok, fetchRecordsTarget*100)
	}
	// One batch of records twice as big moves the average by an eighth:
	// within a quarter, no change.
	feedBatches(s, 1, 100, 100*200)
	if got, ok := s.next(); ok {
		t.Fatalf("next() = %d after one outlier batch, want no change", got)
	}
	// Many of them: the size follows.
	feedBatches(s, 40, 100, 100*200)
	got, ok := s.next()
	if !ok || got < fetchRecordsTarget*190 || got > fetchRecordsTarget*200 {
		t.Fatalf("next() = %d, %v; want about %d, true", got, ok, fetchRecordsTarget*200)
	}
	// Batches with no records (encoding errors) change nothing.
	feedBatches(s, 10, 0, 0)
	if got, ok := s.next(); ok {
		t.Fatalf("next() = %d after empty batches, want no change", got)
	}
}
