package dashboard

import (
	"testing"
	"time"
)

// BenchmarkHistoryObserve is the per-job cost of the dashboard's history.
func BenchmarkHistoryObserve(b *testing.B) {
	h := NewHistory(nil)
	f := ack(time.Millisecond, 2*time.Millisecond)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe("orders", f)
		}
	})
}
