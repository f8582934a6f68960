package memjobs

// entry is one slot of an itemHeap: the item and its two ordering keys,
// kept inline so that sifting never dereferences the item.
type entry struct {
	k1 int64  // priority (ready heap) or due time in ns since start (delay heap)
	k2 uint64 // sequence number: earlier publish first among equal k1
	it *item
}

func (a entry) less(b entry) bool {
	if a.k1 != b.k1 {
		return a.k1 < b.k1
	}
	return a.k2 < b.k2
}

// itemHeap is a binary min-heap of entries ordered by (k1, k2). Push and
// pop are O(log n) and allocate only when the backing slice grows.
// It is not safe for concurrent use; the Queue guards it with its mutex.
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
		h.shrink()
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

// shrink drops a large backing array once the heap is empty, so a burst
// of queued jobs does not pin memory for the life of the queue.
func (h *itemHeap) shrink() {
	if cap(h.s) > 4096 {
		h.s = nil
	}
}
