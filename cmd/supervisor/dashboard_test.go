package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/dashboard"
	"github.com/pipevisor/pipevisor/pipeline"
)

// countObserver counts the fates it is told.
type countObserver struct{ n int }

func (c *countObserver) Observe(string, pipeline.Fate) { c.n++ }

// Without dashboard.address there is no dashboard and the observer is
// the metrics' alone; with one, the history sees the same fates as the
// metrics.
func TestDashboardObserver(t *testing.T) {
	root := &config.Root{}
	d, err := newDashboard(context.Background(), root)
	if err != nil || d != nil {
		t.Fatalf("no address: %v, %v", d, err)
	}
	met := &countObserver{}
	if got := d.observer(met); got != met {
		t.Errorf("observer without a dashboard = %v", got)
	}
	if got := d.observer(nil); got != nil {
		t.Errorf("observer without anything = %v", got)
	}

	root.Dashboard.Address = "127.0.0.1:0"
	d, err = newDashboard(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	d.observer(met).Observe("orders", pipeline.Fate{Action: consumer.Ack})
	d.observer(nil).Observe("orders", pipeline.Fate{Action: consumer.Ack})
	if met.n != 1 || d.hist.Summary("orders").Samples != 2 {
		t.Errorf("metrics saw %d, history %d; want 1 and 2", met.n, d.hist.Summary("orders").Samples)
	}
}

// A dashboard on every interface without auth does not start, naming
// the key; a port in use fails newProduction.
func TestDashboardRefused(t *testing.T) {
	root := &config.Root{Dashboard: config.Dashboard{Address: ":0"}}
	if _, err := newProduction(context.Background(), root, slog.New(slog.DiscardHandler)); !errors.Is(err, dashboard.ErrAuthRequired) || !strings.Contains(err.Error(), "dashboard.auth") {
		t.Errorf("newProduction on :0 without auth = %v", err)
	}
	root.Dashboard.Address = "127.0.0.1:0"
	d, err := newDashboard(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	root.Dashboard.Address = d.ln.Addr().String()
	if _, err := newProduction(context.Background(), root, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "dashboard.address") {
		t.Errorf("newProduction on a port in use = %v", err)
	}
}
