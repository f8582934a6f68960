package jobheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Pop returns the entries in (K1, K2) order whatever the push order, and
// an emptied heap drops a large backing array.
func TestPopOrder(t *testing.T) {
	var h Heap[int]
	var want []Entry[int]
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		e := Entry[int]{K1: int64(r.IntN(10)), K2: uint64(i), Item: i}
		want = append(want, e)
		h.Push(e)
	}
	slices.SortFunc(want, func(a, b Entry[int]) int {
		if a.Less(b) {
			return -1
		}
		return 1
	})
	if h.Len() != len(want) || len(h.Entries()) != len(want) {
		t.Fatalf("Len %d, want %d", h.Len(), len(want))
	}
	for i, w := range want {
		if top := h.Top(); top != w {
			t.Fatalf("Top %d = %+v, want %+v", i, top, w)
		}
		if got := h.Pop(); got != w {
			t.Fatalf("Pop %d = %+v, want %+v", i, got, w)
		}
	}
	if h.Len() != 0 || h.s != nil {
		t.Fatalf("after draining: len %d, backing array kept: %v", h.Len(), cap(h.s))
	}
}
