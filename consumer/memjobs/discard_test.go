package memjobs_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// recorder is a slog.Handler that keeps the records it is given.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// warnings returns the "jobs" attribute of every warning logged.
func (r *recorder) warnings() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for _, rec := range r.recs {
		if rec.Level != slog.LevelWarn {
			continue
		}
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "jobs" {
				out = append(out, a.Value.Int64())
			}
			return true
		})
	}
	return out
}

// Closing a queue that still holds jobs warns with how many it discards
// (ready, keyed behind their lane, delayed); an empty one says nothing.
func TestCloseWarnsWithDiscardedJobs(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	q := memjobs.New("p", memjobs.Config{}, slog.New(rec))
	err := q.Publish(ctx, []consumer.Job{
		{ID: "a"}, {ID: "b"},
		{ID: "k1", Key: "k"}, {ID: "k2", Key: "k"},
		{ID: "later", Delay: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.warnings(); len(got) != 1 || got[0] != 5 {
		t.Errorf("warnings with a jobs count = %v, want one with 5", got)
	}

	rec = &recorder{}
	q = memjobs.New("p", memjobs.Config{}, slog.New(rec))
	if err := q.Publish(ctx, []consumer.Job{{ID: "a"}}); err != nil {
		t.Fatal(err)
	}
	d, err := q.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.warnings(); len(got) != 0 {
		t.Errorf("an empty queue warned on close: %v", got)
	}
}
