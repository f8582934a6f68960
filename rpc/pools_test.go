package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// poolWorkers has two pools and records which ones were reset.
type poolWorkers struct {
	mu     sync.Mutex
	resets []string
}

func (w *poolWorkers) Workers() []WorkerInfo {
	return []WorkerInfo{{Pid: 1, State: "ready", Pool: "default"}, {Pid: 2, State: "working", Pool: "py"}}
}

func (w *poolWorkers) Pools() []PoolInfo {
	return []PoolInfo{
		{Name: "default", Min: 1, Max: 1, Size: 1, Running: 1, Pipelines: []string{"a", "b"}},
		{Name: "py", Min: 1, Max: 4, Size: 3, Running: 2, Waiting: 5, ScaleUps: 2, ScaleDowns: 1, Pipelines: []string{"c"}},
	}
}

func (w *poolWorkers) Reset(ctx context.Context) error { return w.ResetPool(ctx, "*") }

func (w *poolWorkers) ResetPool(_ context.Context, pool string) error {
	if pool != "*" && pool != "default" && pool != "py" {
		return fmt.Errorf("%w %q (pools: default, py)", ErrUnknownPool, pool)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resets = append(w.resets, pool)
	return nil
}

func TestWorkersAndResetByPool(t *testing.T) {
	w := &poolWorkers{}
	addr := startServer(t, NewServer(&fakeJobs{}, w, slog.New(slog.DiscardHandler)), "tcp://127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	ws, err := cl.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Pool != "default" || ws[1].Pool != "py" {
		t.Errorf("Workers = %+v, want each with its pool", ws)
	}
	pools, err := cl.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pools, w.Pools()) {
		t.Errorf("Pools = %+v, want %+v", pools, w.Pools())
	}
	if err := cl.ResetPool(ctx, "py"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	err = cl.ResetPool(ctx, "php")
	if err == nil || !strings.Contains(err.Error(), `unknown worker pool "php" (pools: default, py)`) {
		t.Errorf("ResetPool(php) = %v, want the pools named", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(w.resets, []string{"py", "*"}) {
		t.Errorf("resets %v, want [py *]", w.resets)
	}
}

// A Workers without named pools refuses a reset that names one.
func TestResetPoolWithoutPools(t *testing.T) {
	addr := startServer(t, NewServer(&fakeJobs{}, &originWorkers{}, slog.New(slog.DiscardHandler)), "tcp://127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	err = cl.ResetPool(ctx, "py")
	var se *ServerError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "unknown worker pool") {
		t.Errorf("ResetPool(py) = %v, want unknown worker pool", err)
	}
}
