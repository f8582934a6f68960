package memjobs

import "github.com/pipevisor/pipevisor/consumer/internal/jobheap"

// entry is one slot of an itemHeap: K1 is the priority (ready heap) or
// the due time (delay heap), K2 the publish order.
type entry = jobheap.Entry[*item]

// itemHeap orders queued items by (K1, K2).
type itemHeap = jobheap.Heap[*item]
