package pool

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A worker that has not answered its handshake after a while is reported
// with what it printed, long before allocate_timeout.
func TestSlowHandshakeIsReported(t *testing.T) {
	rec := &recorder{}
	cfg := Config{
		Command:         []string{"sh", "-c", "echo 'waiting for the database' >&2; exec sleep 30"},
		NumWorkers:      1,
		AllocateTimeout: 3 * time.Second,
		DestroyTimeout:  time.Second,
		slowHandshake:   200 * time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := New(ctx, cfg, slog.New(rec)); err == nil {
		t.Fatal("New succeeded with a worker that never answers")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.recs {
		if r.Message != "worker has not answered its handshake yet" {
			continue
		}
		var stderr string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "stderr" {
				stderr = a.Value.String()
			}
			return true
		})
		if r.Level != slog.LevelWarn || !strings.Contains(stderr, "waiting for the database") {
			t.Fatalf("warning at %s with stderr %q", r.Level, stderr)
		}
		return
	}
	t.Fatalf("no warning about the slow handshake among %d records", len(rec.recs))
}
