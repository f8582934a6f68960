package dashboard

import (
	"slices"
	"sync"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/pipeline"
)

// History sizes: one bucket per BucketWidth over HistorySpan, and the
// run times of the last SampleCount jobs per pipeline for the
// percentiles. At most MaxPipelines pipelines are tracked one by one;
// the jobs of later ones count in the totals only.
const (
	BucketWidth  = 10 * time.Second
	HistorySpan  = time.Hour
	SampleCount  = 1024
	MaxPipelines = 256
	// RateWindow is the span jobs/s is averaged over.
	RateWindow = time.Minute
)

const buckets = int(HistorySpan / BucketWidth)

// bucket is what settled in one BucketWidth.
type bucket struct {
	idx    int64 // unix time / BucketWidth; a slot holding another idx is stale
	jobs   int64 // settled, not released
	failed int64
	wait   time.Duration // sum of (receive to settle) - exec over jobs
	exec   time.Duration // sum of exec over jobs
}

// series is the history of one pipeline (or of all of them).
type series struct {
	ring    [buckets]bucket
	samples []time.Duration // ring of exec times, len <= SampleCount
	next    int             // where the next sample goes once full
}

// History keeps the last hour of job fates in memory, in bounded rings.
// It is a pipeline.Observer; its methods are safe for concurrent use.
type History struct {
	now   func() time.Time
	start time.Time

	mu    sync.Mutex
	total series
	pipes map[string]*series
}

// NewHistory returns an empty history. now is the clock (nil: time.Now).
func NewHistory(now func() time.Time) *History {
	if now == nil {
		now = time.Now
	}
	return &History{now: now, start: now(), pipes: make(map[string]*series)}
}

// Observe records the fate of one job. Jobs released unrun (no worker,
// shutdown) are not counted: they will run later.
func (h *History) Observe(name string, f pipeline.Fate) {
	if f.Action == consumer.Release {
		return
	}
	idx := h.now().UnixNano() / int64(BucketWidth)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total.add(idx, f)
	s := h.pipes[name]
	if s == nil {
		if len(h.pipes) >= MaxPipelines {
			return
		}
		s = &series{}
		h.pipes[name] = s
	}
	s.add(idx, f)
}

func (s *series) add(idx int64, f pipeline.Fate) {
	b := &s.ring[idx%int64(buckets)]
	if b.idx != idx {
		*b = bucket{idx: idx}
	}
	b.jobs++
	if f.Failed {
		b.failed++
	}
	b.exec += f.Exec
	if w := f.Took - f.Exec; w > 0 {
		b.wait += w
	}
	if len(s.samples) < SampleCount {
		s.samples = append(s.samples, f.Exec)
		return
	}
	s.samples[s.next] = f.Exec
	s.next = (s.next + 1) % SampleCount
}

// Point is one bucket of the chart.
type Point struct {
	// Time is the start of the bucket (unix milliseconds).
	Time int64 `json:"t"`
	// Jobs settled in the bucket (released ones excluded), Failed of
	// them failed on the worker.
	Jobs   int64 `json:"jobs"`
	Failed int64 `json:"failed"`
	// PerSecond is Jobs over the bucket's width.
	PerSecond float64 `json:"per_second"`
	// WaitMs is the mean time a job spent in the supervisor off a worker
	// (receive to settle, minus the run), ExecMs its mean run time; 0
	// without jobs.
	WaitMs float64 `json:"wait_ms"`
	ExecMs float64 `json:"exec_ms"`
}

// Summary is one pipeline's recent numbers.
type Summary struct {
	// PerSecond is the jobs settled per second over the last RateWindow
	// (or since the history started, when that is shorter).
	PerSecond float64 `json:"per_second"`
	// P50Ms and P99Ms are run-time percentiles over the last SampleCount
	// jobs; Samples says how many there were (0: both are 0).
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	Samples int     `json:"samples"`
}

// Points returns the buckets of the last HistorySpan for pipeline name,
// or of every pipeline when name is "", oldest first; buckets without
// jobs are included (with zeros) so the time axis is regular.
func (h *History) Points(name string) []Point {
	now := h.now().UnixNano() / int64(BucketWidth)
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.total
	if name != "" {
		if s = h.pipes[name]; s == nil {
			s = &series{}
		}
	}
	out := make([]Point, 0, buckets)
	for idx := now - int64(buckets) + 1; idx <= now; idx++ {
		p := Point{Time: idx * int64(BucketWidth) / int64(time.Millisecond)}
		if b := s.ring[idx%int64(buckets)]; b.idx == idx && b.jobs > 0 {
			p.Jobs, p.Failed = b.jobs, b.failed
			p.PerSecond = float64(b.jobs) / BucketWidth.Seconds()
			p.WaitMs = ms(b.wait) / float64(b.jobs)
			p.ExecMs = ms(b.exec) / float64(b.jobs)
		}
		out = append(out, p)
	}
	return out
}

// Summary returns the recent numbers of pipeline name ("" for all).
func (h *History) Summary(name string) Summary {
	now := h.now()
	idx := now.UnixNano() / int64(BucketWidth)
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.total
	if name != "" {
		if s = h.pipes[name]; s == nil {
			return Summary{}
		}
	}
	n := int64(RateWindow / BucketWidth)
	var jobs int64
	for i := idx - n + 1; i <= idx; i++ {
		if b := s.ring[i%int64(buckets)]; b.idx == i {
			jobs += b.jobs
		}
	}
	// The window runs from the start of its oldest bucket to now.
	span := now.Sub(time.Unix(0, (idx-n+1)*int64(BucketWidth)))
	if up := now.Sub(h.start); up < span {
		span = up
	}
	var sum Summary
	if span > 0 {
		sum.PerSecond = float64(jobs) / span.Seconds()
	}
	if len(s.samples) > 0 {
		sorted := slices.Clone(s.samples)
		slices.Sort(sorted)
		sum.Samples = len(sorted)
		sum.P50Ms = ms(percentile(sorted, 0.50))
		sum.P99Ms = ms(percentile(sorted, 0.99))
	}
	return sum
}

// percentile is the nearest-rank percentile of sorted (not empty).
func percentile(sorted []time.Duration, q float64) time.Duration {
	rank := int(q*float64(len(sorted))+0.999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
