// Package jobheap is the priority heap of the drivers that keep their
// queue in the supervisor (memjobs, boltjobs): jobs ordered by two keys.
package jobheap

// Entry is one slot of a Heap: the item and its two ordering keys, kept
// inline so that sifting never dereferences the item.
type Entry[T any] struct {
	K1   int64  // first key: a priority (ready heap) or a due time (delay heap)
	K2   uint64 // among equal K1: publish order, earlier first
	Item T
}

// Less orders entries by (K1, K2).
func (a Entry[T]) Less(b Entry[T]) bool {
	if a.K1 != b.K1 {
		return a.K1 < b.K1
	}
	return a.K2 < b.K2
}

// Heap is a binary min-heap of entries ordered by (K1, K2). Push and Pop
// are O(log n) and allocate only when the backing slice grows; once the
// heap is empty a large backing array is dropped, so a burst of queued
// jobs does not pin memory. It is not safe for concurrent use: the queue
// that holds it guards it with its mutex. The zero value is empty.
type Heap[T any] struct {
	s []Entry[T]
}

// Len returns the number of entries.
func (h *Heap[T]) Len() int { return len(h.s) }

// Top returns the smallest entry; the heap must not be empty.
func (h *Heap[T]) Top() Entry[T] { return h.s[0] }

// Entries returns the entries in no particular order; the caller must not
// modify the slice or keep it past the next Push or Pop.
func (h *Heap[T]) Entries() []Entry[T] { return h.s }

// Push adds e.
func (h *Heap[T]) Push(e Entry[T]) {
	h.s = append(h.s, e)
	i := len(h.s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !e.Less(h.s[p]) {
			break
		}
		h.s[i] = h.s[p]
		i = p
	}
	h.s[i] = e
}

// Pop removes and returns the smallest entry; the heap must not be empty.
func (h *Heap[T]) Pop() Entry[T] {
	top := h.s[0]
	n := len(h.s) - 1
	last := h.s[n]
	h.s[n] = Entry[T]{}
	h.s = h.s[:n]
	if n == 0 {
		if cap(h.s) > 4096 {
			h.s = nil
		}
		return top
	}
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h.s[r].Less(h.s[c]) {
			c = r
		}
		if !h.s[c].Less(last) {
			break
		}
		h.s[i] = h.s[c]
		i = c
	}
	h.s[i] = last
	return top
}
