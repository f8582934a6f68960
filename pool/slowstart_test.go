package pool

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
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

// A pool whose replacements keep failing to start says so (Degraded),
// with how many workers run and why the last start failed; once a
// replacement starts it is not degraded any more.
func TestDegradedWhileReplacementsFail(t *testing.T) {
	dir := t.TempDir()
	cfg := fakeConfig("crash", 2)
	cfg.Env["FAKEWORKER_BOOT_ONCE_FILE"] = filepath.Join(dir, "booted")
	// Only one worker can boot: the other start fails from the outset.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	eventually(t, 5*time.Second, "the pool to report itself degraded", func() bool {
		err := p.Degraded()
		return errors.Is(err, ErrDegraded) && strings.Contains(err.Error(), "1 of 2 workers") &&
			strings.Contains(err.Error(), "refusing to start")
	})
	if err := os.Remove(cfg.Env["FAKEWORKER_BOOT_ONCE_FILE"]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the pool back at full size", func() bool { return p.Degraded() == nil && len(pids(p)) == 2 })
}
