package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/pipevisor/pipevisor/rpc"
)

// workerJSON is one entry of `workers --json`.
type workerJSON struct {
	// Pool is the name of the worker's pool ("default" for jobs.pool).
	Pool       string    `json:"pool"`
	Pid        int       `json:"pid"`
	State      string    `json:"state"`
	Jobs       uint64    `json:"jobs"`
	RSS        uint64    `json:"rss_bytes"`
	Created    time.Time `json:"created"`
	CurrentJob string    `json:"current_job,omitempty"`
	// CurrentJobSince is when the worker was handed CurrentJob.
	CurrentJobSince *time.Time `json:"current_job_since,omitempty"`
}

func toWorkerJSON(ws []rpc.WorkerInfo) []workerJSON {
	out := make([]workerJSON, len(ws))
	for i, w := range ws {
		out[i] = workerJSON{Pool: w.Pool, Pid: w.Pid, State: w.State, Jobs: w.Jobs, RSS: w.RSS, Created: w.Created, CurrentJob: w.CurrentJob}
		if !w.CurrentJobSince.IsZero() {
			since := w.CurrentJobSince
			out[i].CurrentJobSince = &since
		}
	}
	return out
}

// workersAction lists the workers once, or with -i redraws the list every
// --interval until SIGINT or SIGTERM (exit 0) or until the supervisor
// stops answering (exit 1).
func workersAction(c *cli.Context) error {
	if c.Bool("interactive") {
		return watchWorkers(c)
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		ws, err := cl.Workers(ctx)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, toWorkerJSON(ws))
		}
		pools, err := cl.Pools(ctx)
		if err != nil {
			return err
		}
		if err := printWorkers(c.App.Writer, ws, time.Now()); err != nil {
			return err
		}
		return printPools(c.App.Writer, pools)
	})
}

// printWorkers writes the workers table; RUNNING is how long the current
// job has been on its worker at now.
func printWorkers(w io.Writer, ws []rpc.WorkerInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tPID\tSTATE\tJOBS\tRSS\tAGE\tCURRENT JOB\tRUNNING")
	for _, x := range ws {
		running := ""
		if x.CurrentJob != "" && !x.CurrentJobSince.IsZero() {
			running = now.Sub(x.CurrentJobSince).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.1f MB\t%s\t%s\t%s\n", x.Pool, x.Pid, x.State, x.Jobs, float64(x.RSS)/(1<<20),
			now.Sub(x.Created).Round(time.Second), x.CurrentJob, running)
	}
	return tw.Flush()
}

// printPools writes one line per pool: its size, bounds, waiting jobs,
// scaling steps and pipelines.
func printPools(w io.Writer, pools []rpc.PoolInfo) error {
	if len(pools) == 0 {
		return nil
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tWORKERS\tSIZE\tMIN\tMAX\tWAITING\tSCALED UP\tSCALED DOWN\tPIPELINES")
	for _, p := range pools {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Name, p.Running, p.Size, p.Min, p.Max, p.Waiting,
			p.ScaleUps, p.ScaleDowns, strings.Join(p.Pipelines, ","))
	}
	return tw.Flush()
}

// watchWorkers is `workers -i`: a live view in the manner of RoadRunner's
// `rr workers -i`. On a terminal each frame replaces the last; otherwise
// frames follow each other, separated by a blank line.
func watchWorkers(c *cli.Context) error {
	interval := c.Duration("interval")
	if interval <= 0 {
		return cli.Exit("supervisor: --interval must be > 0", 2)
	}
	addr, err := rpcAddress(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := dialClient(ctx, addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	out := c.App.Writer
	tty := isTerminal(out)
	t := time.NewTicker(interval)
	defer t.Stop()
	for frame := 0; ; frame++ {
		callCtx, cancel := context.WithTimeout(ctx, clientTimeout)
		ws, err := cl.Workers(callCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return cli.Exit("supervisor: "+err.Error(), 1)
		}
		now := time.Now()
		switch {
		case tty:
			fmt.Fprint(out, "\x1b[H\x1b[2J")
		case frame > 0:
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "Workers of %s at %s (Ctrl-C to stop)\n", addr, now.Format(time.TimeOnly))
		if err := printWorkers(out, ws, now); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
