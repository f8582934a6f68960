package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/rpc"
	"github.com/pipevisor/pipevisor/tracing"
)

// stopSlack is added to the shutdown grace period for stopping the pool and
// the drivers after the pipelines are done.
const stopSlack = 10 * time.Second

func serveAction(c *cli.Context) error {
	root, err := loadConfig(c.String("config"))
	if err != nil {
		return err
	}
	log := newLogger(root.Logs, c.App.ErrWriter)
	for _, w := range warnings(root, "") {
		log.Warn("config: " + w)
	}
	if path := c.String("cpuprofile"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return cli.Exit("supervisor: --cpuprofile: "+err.Error(), 1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return cli.Exit("supervisor: --cpuprofile: "+err.Error(), 1)
		}
		defer pprof.StopCPUProfile()
	}
	if path := c.String("trace"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return cli.Exit("supervisor: --trace: "+err.Error(), 1)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return cli.Exit("supervisor: --trace: "+err.Error(), 1)
		}
		defer trace.Stop()
	}
	return serve(c.Context, root, log)
}

// serve runs the supervisor until SIGINT or SIGTERM, then shuts down
// gracefully: the RPC server stops accepting, running jobs finish within
// jobs.shutdown_timeout (the rest go back to their broker), the drivers and
// the workers stop. A second SIGINT/SIGTERM exits at once. SIGHUP replaces
// every worker, one at a time.
func serve(parent context.Context, root *config.Root, log *slog.Logger) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	ln, err := rpc.Listen(ctx, root.RPC.Listen)
	if err != nil {
		return cli.Exit(fmt.Sprintf("supervisor: rpc.listen %s: %v", root.RPC.Listen, err), 1)
	}

	// production (issue 9): status, metrics and sd_notify; see production.go.
	prod, err := newProduction(ctx, root, log)
	if err != nil {
		ln.Close()
		return cli.Exit(fmt.Sprintf("supervisor: %v", err), 1)
	}
	defer prod.close()

	tr, err := tracing.New(ctx, root.OTel, tracing.Options{Version: version})
	if err != nil {
		ln.Close()
		return cli.Exit(fmt.Sprintf("supervisor: otel: %v", err), 1)
	}
	// Runs after shutdown: the spans of the last settlements are sent.
	defer flushTraces(tr, log)

	p, err := openPools(root, prod.poolObserver, log) // production: restarts and scaling per pool
	if err != nil {
		ln.Close()
		return cli.Exit(fmt.Sprintf("supervisor: starting workers: %v", err), 1)
	}

	mgr := jobs.New(jobs.Config{
		Factory:   newFactory(root, log),
		Pools:     p.jobsPools(),
		Observer:  prod.observer(), // production: job fates, exec times
		Logger:    log,
		Pipelines: root.Jobs.Pipelines,
		Tracer:    tr,
	})
	// A request frame or a reply may take jobs.timeout to cross the
	// connection, as long as a call may take.
	srv := rpc.NewServer(withTimeout(prod.jobs(mgr), root.Jobs.Timeout), poolWorkers{s: p, log: log, pipelines: mgr.PipelinePools}, log, // production: push counts
		rpc.WithFrameTimeout(root.Jobs.Timeout), rpc.WithFailedJobs(mgr),
		rpc.WithMaxConnections(root.RPC.MaxConnections), rpc.WithMaxInflightBytes(root.RPC.MaxInflightBytes))
	if err := prod.serve(mgr, p); err != nil { // production: /health, /ready, /metrics, dashboard
		ln.Close()
		shutdown(root, mgr, p, log)
		return cli.Exit(fmt.Sprintf("supervisor: %v", err), 1)
	}

	// The pipelines start before the RPC server serves, so no push can
	// name a pipeline that does not exist yet; clients that connect
	// meanwhile wait in the listener's backlog. The workers start after
	// it serves: a worker may call the RPC (declare, push, stat) before
	// it answers its handshake, and jobs received meanwhile wait for a
	// worker as they do when every worker is busy.
	if err := mgr.Start(jobs.WithOrigin(ctx, jobs.Origin{Source: "startup"}), root.Jobs.Consume); err != nil {
		ln.Close()
		shutdown(root, mgr, p, log)
		return cli.Exit(fmt.Sprintf("supervisor: starting pipelines: %v", err), 1)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	rpcCtx, stopRPC := context.WithCancel(context.Background())
	defer stopRPC()
	rpcDone := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rpcDone <- srv.ServeListener(rpcCtx, ln)
	}()
	if ic, ok := root.Server.InitConfig(); ok {
		// server.on_init: once, before the first worker starts.
		if err := pool.RunInit(ctx, ic, log); err != nil {
			stopRPC()
			shutdown(root, mgr, p, log)
			return cli.Exit(fmt.Sprintf("supervisor: server.on_init: %v", err), 1)
		}
	}
	if err := p.Start(ctx); err != nil {
		stopRPC()
		shutdown(root, mgr, p, log)
		return cli.Exit(fmt.Sprintf("supervisor: starting workers: %v", err), 1)
	}
	prod.ready() // production: READY=1, watchdog
	log.Info("supervisor ready", "rpc", root.RPC.Listen, "workers", p.workerCounts(), "consume", root.Jobs.Consume)

	var resetting sync.Mutex
	for {
		select {
		case err := <-rpcDone:
			prod.stopping() // production: STOPPING=1
			shutdown(root, mgr, p, log)
			return cli.Exit(fmt.Sprintf("supervisor: rpc server stopped: %v", err), 1)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if !resetting.TryLock() {
					log.Info("SIGHUP: a reset is already running")
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer resetting.Unlock()
					// Logged (with its origin) and its error too.
					_ = poolWorkers{s: p, log: log}.Reset(jobs.WithOrigin(ctx, jobs.Origin{Source: "signal"}))
				}()
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "grace", root.Jobs.ShutdownTimeout)
			prod.stopping() // production: STOPPING=1
			stopRPC()
			done := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(done)
				shutdown(root, mgr, p, log)
			}()
			for {
				select {
				case <-done:
					log.Info("stopped")
					return nil
				case sig := <-sigs:
					if sig == syscall.SIGHUP {
						continue
					}
					// A second signal: exit at once. Workers see EOF on
					// stdin when this process is gone and end.
					fmt.Fprintf(os.Stderr, "supervisor: second %s: exiting now\n", sig)
					os.Exit(1)
				}
			}
		}
	}
}

// traceFlushTimeout bounds sending the buffered spans at exit.
const traceFlushTimeout = 5 * time.Second

// flushTraces sends the spans tr still buffers and stops its exporter.
func flushTraces(tr *tracing.Tracer, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		log.Warn("otel: sending the last spans", "err", err)
	}
}

// shutdown stops the pipelines (running jobs get jobs.shutdown_timeout) and
// then the workers of every pool.
func shutdown(root *config.Root, mgr *jobs.Manager, p *poolSet, log *slog.Logger) {
	grace, cancel := context.WithTimeout(context.Background(), root.Jobs.ShutdownTimeout)
	if err := mgr.Stop(grace); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("stopping pipelines", "err", err)
	}
	cancel()
	pctx, cancel := context.WithTimeout(context.Background(), destroyTimeout(root)+stopSlack)
	defer cancel()
	if err := p.Stop(pctx); err != nil {
		log.Error("stopping workers", "err", err)
	}
}
