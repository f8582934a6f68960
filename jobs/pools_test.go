package jobs

import (
	"context"
	"errors"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"maps"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// poolsManager returns a manager with pools "slow" (held jobs, 2 slots
// per pipeline) and default (4 slots), and pipelines a (slow), b
// (default by name) and c (default by omission), all consumed.
func poolsManager(t *testing.T) (m *Manager, slow, fast *testExec, conc map[string]int) {
	t.Helper()
	slow = &testExec{hold: make(chan struct{})}
	fast = &testExec{}
	conc = map[string]int{}
	pipe := func(name, pool string) config.Pipeline {
		p := memPipeline(name)
		p.Concurrency, p.Pool = 0, pool
		return p
	}
	m = New(Config{
		Factory: func(_ context.Context, p config.Pipeline) (Driver, error) {
			conc[p.Name] = p.Concurrency
			return memjobs.New(p.Name, *p.Memory, nil), nil
		},
		Pools: map[string]Pool{
			"slow":             {Executor: exectest.Func(slow.Exec), Concurrency: 2},
			config.DefaultPool: {Executor: exectest.Func(fast.Exec), Concurrency: 4},
		},
		Pipelines: map[string]config.Pipeline{"a": pipe("a", "slow"), "b": pipe("b", "default"), "c": pipe("c", "")},
	})
	t.Cleanup(func() {
		close(slow.hold)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	if err := m.Start(context.Background(), []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	return m, slow, fast, conc
}

func TestPipelinesRunOnTheirOwnPool(t *testing.T) {
	m, slow, fast, conc := poolsManager(t)
	if want := map[string]int{"a": 2, "b": 4, "c": 4}; !maps.Equal(conc, want) {
		t.Errorf("slots seen by the factory %v, want %v", conc, want)
	}
	if got, want := m.PipelinePools(), map[string]string{"a": "slow", "b": "default", "c": "default"}; !maps.Equal(got, want) {
		t.Errorf("PipelinePools = %v, want %v", got, want)
	}
	ctx := context.Background()
	if err := m.Push(ctx, jobsFor("a", 10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's 2 slots busy on the slow pool", func() bool { return stat(t, m, "a").Active == 2 })
	// The slow pool holds every job of a; b and c finish regardless.
	if err := m.Push(ctx, append(jobsFor("b", 50), jobsFor("c", 50)...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b and c acked", func() bool { return stat(t, m, "b").Acked == 50 && stat(t, m, "c").Acked == 50 })
	if s := stat(t, m, "a"); s.Acked != 0 || s.Active != 2 {
		t.Errorf("a = %+v: want its jobs still held on the slow pool", s)
	}
	if n := fast.calls.Load(); n != 100 {
		t.Errorf("default pool ran %d jobs, want 100", n)
	}
	if n := slow.calls.Load(); n != 2 {
		t.Errorf("slow pool ran %d jobs, want a's 2", n)
	}
}

func TestUnknownPool(t *testing.T) {
	m, _, _, _ := poolsManager(t)
	err := m.Declare(context.Background(), map[string]string{"name": "d", "driver": "memory", "pool": "nope"})
	if !errors.Is(err, ErrUnknownPool) {
		t.Fatalf("Declare on pool nope: %v, want ErrUnknownPool", err)
	}
	if err := m.Declare(context.Background(), map[string]string{"name": "e", "driver": "memory", "pool": "slow"}); err != nil {
		t.Fatalf("Declare on pool slow: %v", err)
	}
	if got := m.PipelinePools()["e"]; got != "slow" {
		t.Errorf("e runs on %q, want slow", got)
	}

	p := memPipeline("x")
	p.Pool = "gone"
	m2 := New(Config{
		Factory: func(context.Context, config.Pipeline) (Driver, error) {
			return memjobs.New("x", memjobs.Config{}, nil), nil
		},
		Executor:  exectest.Func((&testExec{}).Exec),
		Pipelines: map[string]config.Pipeline{"x": p},
	})
	if err := m2.Start(context.Background(), nil); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("Start with pipeline on pool gone: %v, want ErrUnknownPool", err)
	}
}
