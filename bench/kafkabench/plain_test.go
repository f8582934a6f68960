package main

import (
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// newTestPlain is a plain consumer without client or workers, for the
// hand-out and commit bookkeeping.
func newTestPlain(ordering string) *plainConsumer {
	p := &plainConsumer{
		cfg:    plainConfig{ordering: ordering},
		lanes:  make(map[string]*plainLane),
		parts:  make(map[string]map[int32]*plainPart),
		room:   make(chan struct{}, 1),
		commit: make(chan struct{}, 1),
	}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func fetchOf(partition int32, keys ...string) kgo.Fetches {
	var recs []*kgo.Record
	for i, k := range keys {
		recs = append(recs, &kgo.Record{Topic: "t", Partition: partition, Offset: int64(i), Key: []byte(k)})
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{{Partition: partition, Records: recs}}}}}}
}

func offsets(recs []*plainRec) []int64 {
	var o []int64
	for _, r := range recs {
		o = append(o, r.r.Offset)
	}
	return o
}

// With ordering key, one record of a key runs at a time, later keys pass
// it, and the commit covers only the contiguous done prefix.
func TestPlainKeyOrderAndDonePrefix(t *testing.T) {
	p := newTestPlain("key")
	if n := p.ingest(fetchOf(0, "a", "b", "a", "b")); n != 4 {
		t.Fatalf("ingest = %d, want 4", n)
	}
	got := p.take(nil, 8)
	if !slices.Equal(offsets(got), []int64{0, 1}) {
		t.Fatalf("first take = %v, want [0 1]", offsets(got))
	}
	pt := p.parts["t"][0]
	p.finish(got[1])
	if pt.dirty {
		t.Fatalf("offset 1 done before 0 moved the commit to %d", pt.next.Offset)
	}
	p.finish(got[0])
	if !pt.dirty || pt.next.Offset != 2 {
		t.Fatalf("commit point = %d (dirty %v), want 2", pt.next.Offset, pt.dirty)
	}
	got = p.take(nil, 8)
	if o := offsets(got); !slices.Equal(slices.Sorted(slices.Values(o)), []int64{2, 3}) {
		t.Fatalf("second take = %v, want 2 and 3", o)
	}
}

// With ordering partition, a partition's records run one at a time.
func TestPlainPartitionOrder(t *testing.T) {
	p := newTestPlain("partition")
	p.ingest(fetchOf(0, "a", "b"))
	p.ingest(fetchOf(1, "a", "b"))
	got := p.take(nil, 8)
	if len(got) != 2 || got[0].r.Partition == got[1].r.Partition || got[0].r.Offset != 0 || got[1].r.Offset != 0 {
		t.Fatalf("take = %v of partitions %d, %d; want offset 0 of each partition", offsets(got), got[0].r.Partition, got[1].r.Partition)
	}
	p.finish(got[0])
	next := p.take(nil, 8)
	if len(next) != 1 || next[0].r.Partition != got[0].r.Partition || next[0].r.Offset != 1 {
		t.Fatalf("after finishing partition %d: take = %v", got[0].r.Partition, offsets(next))
	}
}
