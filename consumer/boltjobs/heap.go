package boltjobs

// entry is one slot of an itemHeap: the item and its two ordering keys.
type entry struct {
	k1 int64  // priority (ready heap) or due time in Unix ns (delay heap)
	k2 uint64 // position: earlier first among equal k1
	it *item
}

func (a entry) less(b entry) bool {
	if a.k1 != b.k1 {
		return a.k1 < b.k1
	}
	return a.k2 < b.k2
}

// itemHeap is a binary min-heap of entries ordered by (k1, k2). It is not
// safe for concurrent use; the Queue guards it with its mutex.
type itemHeap struct {
	s []entry
}

func (h *itemHeap) len() int { return len(h.s) }

// top returns the smallest entry; the heap must not be empty.
func (h *itemHeap) top() entry { return h.s[0] }

func (h *itemHeap) push(e entry) {
	h.s = append(h.s, e)
	i := len(h.s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !e.less(h.s[p]) {
			break
		}
		h.s[i] = h.s[p]
		i = p
	}
	h.s[i] = e
}

// pop removes and returns the smallest entry; the heap must not be empty.
func (h *itemHeap) pop() entry {
	top := h.s[0]
	n := len(h.s) - 1
	last := h.s[n]
	h.s[n] = entry{}
	h.s = h.s[:n]
	if n == 0 {
		if cap(h.s) > 4096 {
			h.s = nil // a drained burst does not pin its memory
		}
		return top
	}
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h.s[r].less(h.s[c]) {
			c = r
		}
		if !h.s[c].less(last) {
			break
		}
		h.s[i] = h.s[c]
		i = c
	}
	h.s[i] = last
	return top
}
