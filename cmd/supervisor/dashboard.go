package main

import (
	"context"
	"fmt"

	"net"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/dashboard"
	"github.com/pipevisor/pipevisor/pipeline"
	"github.com/pipevisor/pipevisor/status"
)

// dashboardServer is the web dashboard of a production: it listens from
// newProduction on (a port in use fails the start) and serves once the
// manager and the pool exist. Its history is fed by the same observer as
// the metrics. A nil *dashboardServer (dashboard.address empty) does
// nothing.
type dashboardServer struct {
	ln   net.Listener
	hist *dashboard.History
}

// newDashboard opens dashboard.address; nil when it is empty. An address
// that is not a loopback one without dashboard.auth is refused.
func newDashboard(ctx context.Context, root *config.Root) (*dashboardServer, error) {
	if root.Dashboard.Address == "" {
		return nil, nil
	}
	ln, err := dashboard.Listen(ctx, root)
	if err != nil {
		return nil, err
	}
	return &dashboardServer{ln: ln, hist: dashboard.NewHistory(nil)}, nil
}

// observer returns next, plus the dashboard's history when there is a
// dashboard (nil when both are absent).
func (d *dashboardServer) observer(next pipeline.Observer) pipeline.Observer {
	if d == nil {
		return next
	}
	if next == nil {
		return d.hist
	}
	return observers{next, d.hist}
}

// observers tells each of its observers every job's fate.
type observers []pipeline.Observer

func (o observers) Observe(name string, f pipeline.Fate) {
	for _, x := range o {
		x.Observe(name, f)
	}
}

// serveDashboard serves the dashboard of pr (if any) until pr.close.
func (pr *production) serveDashboard() error {
	d := pr.dash
	if d == nil {
		return nil
	}
	srv, err := dashboard.New(dashboard.Config{
		Root:    pr.root,
		Stats:   pr.mgr,
		Workers: pr.pool,
		Failed:  pr.mgr,
		History: d.hist,
		Logger:  pr.log,
	})
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	pr.log.Info("dashboard serving", "address", "http://"+d.ln.Addr().String()+"/", "auth", pr.root.Dashboard.Auth != nil)
	pr.wg.Go(func() {
		if err := status.ServeHTTP(pr.ctx, d.ln, srv.Handler(), pr.log); err != nil {
			pr.log.Error("dashboard server stopped", "err", err)
		}
	})
	return nil
}

// close closes the listener (when it was never served).
func (d *dashboardServer) close() {
	if d != nil {
		d.ln.Close()
	}
}
