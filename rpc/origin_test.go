package rpc

import (
	"context"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/retry"
)

// recorder is a slog.Handler keeping every record with its attributes.
type recorder struct {
	mu   sync.Mutex
	recs []map[string]string // "msg" and "level" plus the attributes
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{"msg": rec.Message, "level": rec.Level.String()}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, m)
	r.mu.Unlock()
	return nil
}

// find returns the first record with message msg.
func (r *recorder) find(msg string) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.recs {
		if m["msg"] == msg {
			return m
		}
	}
	return nil
}

type ackExec struct{}

func (x ackExec) Exec(context.Context, frame.Payload) (frame.Payload, error) {
	return frame.Payload{}, nil
}

// originWorkers records the origin its Reset was called with.
type originWorkers struct {
	mu     sync.Mutex
	origin jobs.Origin
}

func (w *originWorkers) Workers() []WorkerInfo { return nil }
func (w *originWorkers) Reset(ctx context.Context) error {
	w.mu.Lock()
	w.origin = jobs.OriginOf(ctx)
	w.mu.Unlock()
	return nil
}

// TestRPCActionsCarryTheirOrigin: through the RPC server, a push to an
// unknown pipeline names the pipelines that exist, and pause, resume,
// declare and destroy are logged at info with origin rpc and the peer's
// address; reset gets the same origin.
func TestRPCActionsCarryTheirOrigin(t *testing.T) {
	rec := &recorder{}
	mem := func(name string) config.Pipeline {
		return config.Pipeline{Name: name, Driver: config.DriverMemory, Retry: retry.Defaults(), Memory: &memjobs.Config{}}
	}
	m := jobs.New(jobs.Config{
		Factory: func(_ context.Context, p config.Pipeline) (jobs.Driver, error) {
			return memjobs.New(p.Name, memjobs.Config{}, nil), nil
		},
		Executor:  exectest.Func(ackExec{}.Exec),
		Logger:    slog.New(rec),
		Pipelines: map[string]config.Pipeline{"orders": mem("orders"), "emails": mem("emails")},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(jobs.WithOrigin(ctx, jobs.Origin{Source: "startup"}), []string{"orders"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	if r := rec.find("pipelines declared"); r == nil || r["origin"] != "startup" || r["consumed"] != "[orders]" || r["paused"] != "[emails]" {
		t.Errorf("Start logged %v, want the pipelines with origin startup", r)
	}

	w := &originWorkers{}
	addr := startServer(t, NewServer(m, w, slog.New(slog.DiscardHandler)), "tcp://127.0.0.1:0")
	cl, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	err = cl.Push(ctx, consumer.Job{ID: "1", Name: "x", Pipeline: "ordrs"})
	if err == nil || !strings.Contains(err.Error(), `unknown pipeline "ordrs" (pipelines: emails, orders)`) {
		t.Errorf("push to ordrs = %v, want the existing pipelines named", err)
	}

	if err := cl.Pause(ctx, "orders", "emails"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Resume(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Declare(ctx, map[string]string{"name": "late", "driver": "memory"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Destroy(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ msg, key, want string }{
		{"pipelines paused", "pipelines", "[orders emails]"},
		{"pipelines resumed", "pipelines", "[orders]"},
		{"pipeline declared", "pipeline", "late"},
		{"pipelines destroyed", "pipelines", "[late]"},
	} {
		r := rec.find(c.msg)
		if r == nil {
			t.Errorf("no %q logged", c.msg)
			continue
		}
		if r["level"] != "INFO" || r[c.key] != c.want || r["origin"] != "rpc" || !strings.HasPrefix(r["remote"], "127.0.0.1:") {
			t.Errorf("%q logged as %v, want info, %s=%s, origin rpc and the peer address", c.msg, r, c.key, c.want)
		}
	}
	w.mu.Lock()
	got := w.origin
	w.mu.Unlock()
	if got.Source != "rpc" || !strings.HasPrefix(got.Remote, "127.0.0.1:") {
		t.Errorf("Reset called with origin %+v, want rpc from 127.0.0.1", got)
	}
}
