package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/metrics"
	"github.com/pipevisor/pipevisor/notify"
	"github.com/pipevisor/pipevisor/pipeline"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/rpc"
	"github.com/pipevisor/pipevisor/status"
)

// production runs what a supervisor needs in production next to its
// pipelines: /health and /ready on status.address, /metrics on
// metrics.address (each off when its address is empty) and the systemd
// notifications (READY=1, WATCHDOG=1, STOPPING=1; no-ops outside systemd).
//
// Use: newProduction before pool.New (it listens at once, so a port in use
// fails the start), hook poolObserver/executor/observer/jobs into the
// pool, the manager and the RPC server, serve once the manager exists,
// ready after mgr.Start succeeded, stopping when shutdown begins, close on
// exit (it waits for every goroutine it started).
type production struct {
	root   *config.Root
	log    *slog.Logger
	notify *notify.Notifier
	met    *metrics.Metrics       // nil when metrics.address is empty
	pools  *metrics.PoolCollector // nil when metrics.address is empty
	dash   *dashboardServer       // nil when dashboard.address is empty

	statusLn, metricsLn net.Listener

	// mgr and pool are set by serve, before any goroutine reads them.
	mgr  *jobs.Manager
	pool *poolSet

	ctx    context.Context // cancelled by close: stops the HTTP servers
	cancel context.CancelFunc
	mu     sync.Mutex // guards wd
	wd     *ownedGoroutine
	wg     sync.WaitGroup
}

// ownedGoroutine is a goroutine with its own cancel and a channel closed
// when it returned.
type ownedGoroutine struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// newProduction opens the status and metrics listeners configured in root.
func newProduction(ctx context.Context, root *config.Root, log *slog.Logger) (*production, error) {
	pr := &production{root: root, log: log, notify: notify.New(log)}
	var err error
	if addr := root.Status.Address; addr != "" {
		if pr.statusLn, err = status.Listen(ctx, addr); err != nil {
			return nil, fmt.Errorf("status.address: %w", err)
		}
	}
	if addr := root.Metrics.Address; addr != "" {
		if pr.metricsLn, err = status.Listen(ctx, addr); err != nil {
			if pr.statusLn != nil {
				pr.statusLn.Close()
			}
			return nil, fmt.Errorf("metrics.address: %w", err)
		}
		pr.met = metrics.New(metrics.Sources{
			Stat:    func(ctx context.Context) ([]consumer.Stat, error) { return pr.mgr.Stat(ctx) },
			Workers: func() []pool.WorkerInfo { return pr.pool.Workers() },
		})
		pr.pools = metrics.NewPoolCollector(func() []metrics.PoolState { return pr.pool.states() })
		pr.met.Registry().MustRegister(pr.pools)
	}
	if pr.dash, err = newDashboard(ctx, root); err != nil { // see dashboard.go
		for _, ln := range []net.Listener{pr.statusLn, pr.metricsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		return nil, err
	}
	pr.ctx, pr.cancel = context.WithCancel(context.Background())
	return pr, nil
}

// poolObserver is pool.Config.Observer of the pool named name: worker
// restarts for the metrics, in total and per pool (its scaling is read at
// scrape time).
func (pr *production) poolObserver(name string) pool.Observer {
	if pr.met == nil {
		return nil
	}
	return pr.pools.Observer(name, pr.met)
}

// observer is jobs.Config.Observer: every job's fate for the metrics
// and the dashboard's history.
func (pr *production) observer() pipeline.Observer {
	var next pipeline.Observer
	if pr.met != nil {
		next = pr.met
	}
	return pr.dash.observer(next)
}

// jobs wraps the manager for the RPC server: push counts and errors.
func (pr *production) jobs(j rpc.Jobs) rpc.Jobs {
	if pr.met == nil {
		return j
	}
	return meteredJobs{Jobs: j, m: pr.met}
}

// meteredJobs counts the jobs pushed over RPC and the ones that failed.
type meteredJobs struct {
	rpc.Jobs
	m *metrics.Metrics
}

func (j meteredJobs) Push(ctx context.Context, batch []consumer.Job) error {
	err := j.Jobs.Push(ctx, batch)
	j.m.Pushed(batch, err)
	return err
}

// serve starts the HTTP servers. /health answers 503 while no worker is
// up (also while the first workers start) and while the pool is below its
// size because workers fail to start; /ready answers 503 until a
// worker is up and every consumed pipeline is started. The dashboard
// serves too when configured (an error means it could not start).
func (pr *production) serve(mgr *jobs.Manager, p *poolSet) error {
	pr.mgr, pr.pool = mgr, p
	if pr.statusLn != nil {
		srv := status.New(status.Config{
			Health: pr.health,
			Ready: func() error {
				if err := pr.alive(); err != nil {
					return err
				}
				return mgr.Ready()
			},
			UnavailableStatus: pr.root.Status.UnavailableStatusCode,
			Logger:            pr.log,
		})
		pr.wg.Go(func() {
			if err := srv.Serve(pr.ctx, pr.statusLn); err != nil {
				pr.log.Error("status server stopped", "err", err)
			}
		})
	}
	if pr.metricsLn != nil {
		pr.wg.Go(func() {
			if err := status.ServeHTTP(pr.ctx, pr.metricsLn, pr.met.Handler(), pr.log); err != nil {
				pr.log.Error("metrics server stopped", "err", err)
			}
		})
	}
	return pr.serveDashboard()
}

// errNoLiveWorker is the /health reason when the pool has no worker.
var errNoLiveWorker = errors.New("pool: no live worker (the worker command keeps failing?)")

// alive is the watchdog's test: every pool has at least one worker that
// is ready or working. (A restart by systemd would not mend a pool that
// is merely below its size.)
func (pr *production) alive() error {
	return pr.pool.alive()
}

// health is /health: alive, and no pool below its size because its
// workers keep failing to start (pool.Degraded).
func (pr *production) health() error {
	if err := pr.alive(); err != nil {
		return err
	}
	return pr.pool.degraded()
}

// readyPoll is how often ready checks whether every consumed pipeline is
// up before it sends READY=1.
const readyPoll = 50 * time.Millisecond

// readyPatience: a wait for READY=1 longer than this is logged (a broker
// that is slow to answer or down).
const readyPatience = 2 * time.Second

// ready is called once mgr.Start succeeded. In a goroutine of its own it
// waits until every consumed pipeline is up (mgr.Ready; a driver may
// still be connecting), then sends READY=1 and runs the watchdog until
// stopping. Without a NOTIFY_SOCKET it only waits and runs the (disabled)
// watchdog: nothing is sent.
func (pr *production) ready() {
	ctx, cancel := context.WithCancel(pr.ctx)
	g := &ownedGoroutine{cancel: cancel, done: make(chan struct{})}
	pr.mu.Lock()
	pr.wd = g
	pr.mu.Unlock()
	pr.wg.Go(func() {
		defer close(g.done)
		t := time.NewTicker(readyPoll)
		defer t.Stop()
		start, said := time.Now(), false
		for err := pr.mgr.Ready(); err != nil; err = pr.mgr.Ready() {
			if !said && time.Since(start) >= readyPatience {
				pr.log.Info("waiting for every consumed pipeline before READY=1", "err", err)
				said = true
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if err := pr.notify.Ready(); err != nil {
			pr.log.Warn("sd_notify READY=1 failed", "err", err)
		}
		if err := pr.notify.Watchdog(ctx, pr.alive); err != nil {
			pr.log.Warn("systemd watchdog disabled", "err", err)
		}
	})
}

// stopping stops the watchdog pings (waiting for the goroutine of ready,
// so no WATCHDOG=1 follows) and tells systemd that shutdown began. The
// HTTP servers keep answering (/ready is 503 from now on) until close.
func (pr *production) stopping() {
	pr.mu.Lock()
	g := pr.wd
	pr.mu.Unlock()
	if g != nil {
		g.cancel()
		<-g.done
	}
	if err := pr.notify.Stopping(); err != nil {
		pr.log.Warn("sd_notify STOPPING=1 failed", "err", err)
	}
}

// close stops the HTTP servers and waits for every goroutine of pr.
func (pr *production) close() {
	pr.cancel()
	pr.wg.Wait()
	pr.dash.close()
	// Listeners serve never took over.
	for _, ln := range []net.Listener{pr.statusLn, pr.metricsLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Unit files looked up when `validate` gets no --unit.
var defaultUnitFiles = []string{"packaging/systemd/pipevisor.service", "/etc/systemd/system/pipevisor.service"}

// systemdDefaultStopTimeout is systemd's DefaultTimeoutStopSec.
const systemdDefaultStopTimeout = 90 * time.Second

// unitWarnings compares the shutdown grace period of root with the
// TimeoutStopSec of a systemd unit file: path, or when empty the first of
// defaultUnitFiles that exists (none: no warning).
func unitWarnings(root *config.Root, path string) []string {
	if path == "" {
		for _, p := range defaultUnitFiles {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			return nil
		}
	}
	stop, err := unitStopTimeout(path)
	if err != nil {
		return []string{fmt.Sprintf("unit %s: %v", path, err)}
	}
	if stop == 0 { // TimeoutStopSec=infinity
		return nil
	}
	grace := shutdownGrace(root)
	if grace > stop {
		return []string{fmt.Sprintf(
			"jobs.shutdown_timeout (%s) + jobs.pool.destroy_timeout (%s) + %s = %s is longer than TimeoutStopSec=%s in %s: systemd will SIGKILL the supervisor and its workers before running jobs are handed back",
			root.Jobs.ShutdownTimeout, destroyTimeout(root), stopSlack, grace, stop, path)}
	}
	return nil
}

// shutdownGrace is how long serve may take to stop after SIGTERM: the
// pipelines' grace period, then the workers' destroy timeout plus slack.
func shutdownGrace(root *config.Root) time.Duration {
	return root.Jobs.ShutdownTimeout + destroyTimeout(root) + stopSlack
}

// destroyTimeout is the longest destroy_timeout of the pools (they stop
// at once).
func destroyTimeout(root *config.Root) time.Duration {
	var d time.Duration
	for _, name := range root.PoolNames() {
		cfg, _ := root.PoolConfigFor(name)
		d = max(d, cfg.DestroyTimeout)
	}
	if d > 0 {
		return d
	}
	return pool.DefaultTimeout
}

// errUnitSyntax: a TimeoutStopSec value that is not a time span.
var errUnitSyntax = errors.New("not a systemd time span")

// unitStopTimeout reads the [Service] TimeoutStopSec (or TimeoutSec) of a
// unit file; 0 means infinity; systemd's default when neither is set.
func unitStopTimeout(path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var section, stop, both string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "[Service]" {
			continue
		}
		switch strings.TrimSpace(k) {
		case "TimeoutStopSec":
			stop = strings.TrimSpace(v)
		case "TimeoutSec":
			both = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if stop == "" {
		stop = both
	}
	if stop == "" {
		return systemdDefaultStopTimeout, nil
	}
	d, err := parseTimespan(stop)
	if err != nil {
		return 0, fmt.Errorf("TimeoutStopSec=%s: %w", stop, err)
	}
	return d, nil
}

// systemd time span units (systemd.time(7)).
var timespanUnits = map[string]time.Duration{
	"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"ms": time.Millisecond, "msec": time.Millisecond, "us": time.Microsecond, "usec": time.Microsecond,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// parseTimespan parses a systemd time span: "90", "5min 30s", "1h30min",
// "infinity" (returned as 0). A bare number is seconds.
func parseTimespan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "infinity" {
		return 0, nil
	}
	var total time.Duration
	rest := s
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, errUnitSyntax
		}
		num := rest[:i]
		rest = strings.TrimLeft(rest[i:], " ")
		j := 0
		for j < len(rest) && rest[j] >= 'a' && rest[j] <= 'z' {
			j++
		}
		unit, ok := timespanUnits[rest[:j]]
		if !ok {
			return 0, errUnitSyntax
		}
		rest = rest[j:]
		var n float64
		if _, err := fmt.Sscanf(num, "%g", &n); err != nil {
			return 0, errUnitSyntax
		}
		total += time.Duration(n * float64(unit))
	}
	if total == 0 && s != "0" {
		return 0, errUnitSyntax
	}
	return total, nil
}

// unitFlag is validate's --unit.
var unitFlag = &cli.StringFlag{
	Name:  "unit",
	Usage: "systemd unit file whose TimeoutStopSec must cover the shutdown grace period (default: packaging/systemd/pipevisor.service or /etc/systemd/system/pipevisor.service if present)",
}
