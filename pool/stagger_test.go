package pool

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Start boots a large pool a few workers at a time: never more than
// maxConcurrentStarts workers are between their first instruction and
// their handshake at once, and yet more than one is (the start is not
// serialised), and every worker comes up.
func TestStartBootsABoundedNumberOfWorkersAtOnce(t *testing.T) {
	checkLeaks(t)
	bound := maxConcurrentStarts()
	n := 2*bound + 3
	bootLog := filepath.Join(t.TempDir(), "boots")
	cfg := fakeConfig("echo", n)
	cfg.Env["FAKEWORKER_BOOT_LOG"] = bootLog
	cfg.Env["FAKEWORKER_BOOT_DELAY"] = "150ms"
	cfg.AllocateTimeout = 30 * time.Second
	p, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if got := len(p.Workers()); got != n {
		t.Fatalf("%d workers after Start, want %d", got, n)
	}
	most, begins := bootOverlap(t, bootLog)
	if begins != n {
		t.Fatalf("%d workers booted, want %d", begins, n)
	}
	if most > bound {
		t.Fatalf("%d workers were booting at once, want at most %d", most, bound)
	}
	if most < 2 {
		t.Fatalf("workers booted one at a time (at most %d at once), want up to %d in parallel", most, bound)
	}
}

// bootOverlap reads a FAKEWORKER_BOOT_LOG file and returns the most
// workers that were between "begin" and "end" at the same time, and how
// many began.
func bootOverlap(t *testing.T, path string) (most, begins int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		at    int64
		delta int
	}
	var events []event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		kind, at, ok := strings.Cut(line, " ")
		ns, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil {
			t.Fatalf("boot log line %q", line)
		}
		switch kind {
		case "begin":
			begins++
			events = append(events, event{ns, 1})
		case "end":
			events = append(events, event{ns, -1})
		default:
			t.Fatalf("boot log line %q", line)
		}
	}
	// An end and a begin at the same instant: the end first.
	sort.Slice(events, func(i, j int) bool {
		if events[i].at != events[j].at {
			return events[i].at < events[j].at
		}
		return events[i].delta < events[j].delta
	})
	cur := 0
	for _, e := range events {
		cur += e.delta
		most = max(most, cur)
	}
	return most, begins
}

// Stop during a staggered start ends it: Start returns without starting
// the workers it had not reached, and nothing is left running.
func TestStopDuringStaggeredStart(t *testing.T) {
	checkLeaks(t)
	cfg := fakeConfig("echo", 4*maxConcurrentStarts())
	cfg.Env["FAKEWORKER_BOOT_LOG"] = filepath.Join(t.TempDir(), "boots")
	cfg.Env["FAKEWORKER_BOOT_DELAY"] = "300ms"
	p, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- p.Start(context.Background()) }()
	eventually(t, 10*time.Second, "the first workers to boot", func() bool {
		b, _ := os.ReadFile(cfg.Env["FAKEWORKER_BOOT_LOG"])
		return strings.Contains(string(b), "begin")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-started; err == nil {
		t.Fatal("Start returned nil after Stop cut it short")
	}
	_, begins := bootOverlap(t, cfg.Env["FAKEWORKER_BOOT_LOG"])
	if begins >= cfg.NumWorkers {
		t.Fatalf("%d of %d workers booted although Stop came during the first ones", begins, cfg.NumWorkers)
	}
}
