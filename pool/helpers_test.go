package pool

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/internal/fakeworker"
)

// TestHelperProcess is the fake worker when this test binary is started
// by a pool under test.
func TestHelperProcess(t *testing.T) {
	if mode := os.Getenv(fakeworker.HelperEnv); mode != "" {
		os.Exit(fakeworker.Main(mode))
	}
}

// fakeConfig is a pool of n fake workers in mode with fast test timings.
func fakeConfig(mode string, n int) Config {
	return Config{
		Command:         fakeworker.HelperCommand(),
		Env:             map[string]string{fakeworker.HelperEnv: mode},
		NumWorkers:      n,
		AllocateTimeout: 5 * time.Second,
		DestroyTimeout:  5 * time.Second,
		ResetTimeout:    20 * time.Second,
		Supervisor:      Supervisor{WatchTick: 50 * time.Millisecond},
	}
}

// recorder is a slog.Handler that keeps records, to check stderr forwarding.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec.Clone())
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// checkLeaks registers a cleanup, run after the pool's own cleanup, that
// fails the test if a child process or a goroutine outlived it.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		if kids := children(); len(kids) > 0 {
			t.Errorf("child processes left after Stop: %v", kids)
		}
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// children lists processes whose parent is this test process (zombies
// included: a zombie is a child nobody reaped).
func children() []string {
	me := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == me {
			out = append(out, e.Name()+" "+f[0])
		}
	}
	return out
}

// start creates a pool, and stops it at cleanup (leaks checked after).
func start(t *testing.T, cfg Config, log *slog.Logger) *Pool {
	t.Helper()
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := New(ctx, cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return p
}

func job(id, body string) frame.Payload {
	return frame.Payload{Context: []byte(`{"id":"` + id + `","job":"test","driver":"memory","headers":{},"pipeline":"p"}`), Body: []byte(body)}
}

func run(t *testing.T, p *Pool, pl frame.Payload) frame.Payload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := p.Exec(ctx, pl)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	return out
}

func pids(p *Pool) map[int]bool {
	m := map[int]bool{}
	for _, w := range p.Workers() {
		if w.State == "ready" || w.State == "working" {
			m[w.Pid] = true
		}
	}
	return m
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readyCount(p *Pool) int {
	n := 0
	for _, w := range p.Workers() {
		if w.State == "ready" {
			n++
		}
	}
	return n
}

func mustBe(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
