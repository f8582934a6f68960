package dashboard

import (
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/pipeline"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newClock starts on a bucket boundary.
func newClock() *clock {
	return &clock{t: time.Unix(1_700_000_000, 0).Truncate(BucketWidth)}
}

func ack(exec, took time.Duration) pipeline.Fate {
	return pipeline.Fate{Action: consumer.Ack, Exec: exec, Took: took}
}

// Jobs/s is averaged over the last minute (or the time since start),
// the percentiles are nearest-rank over the recent run times, released
// jobs do not count, and each pipeline has its own numbers.
func TestHistorySummary(t *testing.T) {
	c := newClock()
	h := NewHistory(c.now)
	if s := h.Summary("orders"); s != (Summary{}) {
		t.Fatalf("empty summary = %+v", s)
	}
	for i := 1; i <= 100; i++ {
		h.Observe("orders", ack(time.Duration(i)*time.Millisecond, time.Duration(i)*time.Millisecond+5*time.Millisecond))
	}
	h.Observe("orders", pipeline.Fate{Action: consumer.Release, Took: time.Second})
	h.Observe("emails", ack(time.Second, time.Second))
	c.add(20 * time.Second)

	s := h.Summary("orders")
	if s.Samples != 100 || s.P50Ms != 50 || s.P99Ms != 99 {
		t.Errorf("orders percentiles = %+v, want 100 samples, p50 50ms, p99 99ms", s)
	}
	if s.PerSecond != 5 { // 100 jobs in the 20 s since start
		t.Errorf("orders per second = %v, want 5", s.PerSecond)
	}
	if e := h.Summary("emails"); e.Samples != 1 || e.P50Ms != 1000 || e.P99Ms != 1000 {
		t.Errorf("emails = %+v", e)
	}
	if all := h.Summary(""); all.Samples != 101 || all.PerSecond != 101.0/20 {
		t.Errorf("total = %+v, want 101 samples at 5.05/s", all)
	}

	// Two minutes later the jobs have left the rate window but not the
	// percentiles.
	c.add(2 * time.Minute)
	if s := h.Summary("orders"); s.PerSecond != 0 || s.Samples != 100 {
		t.Errorf("orders after 2 min = %+v, want rate 0 and the samples kept", s)
	}
}

// The chart holds one point per bucket over the last hour, oldest first,
// with the mean wait (took - exec) and run time; older buckets fall off.
func TestHistoryPoints(t *testing.T) {
	c := newClock()
	h := NewHistory(c.now)
	h.Observe("orders", ack(10*time.Millisecond, 30*time.Millisecond))
	h.Observe("orders", ack(30*time.Millisecond, 50*time.Millisecond))
	h.Observe("orders", pipeline.Fate{Action: consumer.Retry, Exec: 20 * time.Millisecond, Took: 20 * time.Millisecond, Failed: true})
	c.add(BucketWidth)

	pts := h.Points("orders")
	if len(pts) != int(HistorySpan/BucketWidth) {
		t.Fatalf("%d points, want %d", len(pts), HistorySpan/BucketWidth)
	}
	last, prev := pts[len(pts)-1], pts[len(pts)-2]
	if last.Jobs != 0 {
		t.Errorf("current bucket = %+v, want empty", last)
	}
	if prev.Jobs != 3 || prev.Failed != 1 || prev.PerSecond != 3/BucketWidth.Seconds() || prev.WaitMs != 40.0/3 || prev.ExecMs != 20 {
		t.Errorf("previous bucket = %+v", prev)
	}
	if prev.Time != c.now().Add(-BucketWidth).UnixMilli() {
		t.Errorf("previous bucket starts at %d, want %d", prev.Time, c.now().Add(-BucketWidth).UnixMilli())
	}
	if got := h.Points("")[len(pts)-2]; got != prev {
		t.Errorf("all pipelines = %+v, want %+v", got, prev)
	}
	if got := h.Points("nope")[len(pts)-2]; got.Jobs != 0 {
		t.Errorf("unknown pipeline = %+v", got)
	}

	c.add(HistorySpan)
	for _, p := range h.Points("orders") {
		if p.Jobs != 0 {
			t.Fatalf("an hour later a bucket still has jobs: %+v", p)
		}
	}
}

// The memory used is bounded: SampleCount run times per pipeline and at
// most MaxPipelines pipelines (later ones count in the totals).
func TestHistoryBounded(t *testing.T) {
	h := NewHistory(nil)
	for i := 0; i < 3*SampleCount; i++ {
		h.Observe("orders", ack(time.Duration(i), time.Duration(i)))
	}
	if s := h.Summary("orders"); s.Samples != SampleCount {
		t.Errorf("samples = %d, want %d", s.Samples, SampleCount)
	}
	for i := 0; i < MaxPipelines+10; i++ {
		h.Observe(string(rune('a'+i%26))+time.Duration(i).String(), ack(time.Millisecond, time.Millisecond))
	}
	h.mu.Lock()
	n := len(h.pipes)
	h.mu.Unlock()
	if n != MaxPipelines {
		t.Errorf("%d pipelines tracked, want %d", n, MaxPipelines)
	}
	if s := h.Summary(""); s.Samples != SampleCount {
		t.Errorf("total samples = %d", s.Samples)
	}
}
