package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/urfave/cli/v2"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// clientTimeout bounds one client command's conversation with the server.
const clientTimeout = 5 * time.Minute

// rpcAddress returns --rpc (host:port without a scheme is tcp), or
// rpc.listen of the config file, or the default address when the config
// file does not exist and -c was not given.
func rpcAddress(c *cli.Context) (string, error) {
	if a := c.String("rpc"); a != "" {
		if !strings.Contains(a, "://") {
			a = "tcp://" + a // RoadRunner's CLI takes host:port
		}
		return a, nil
	}
	path := c.String("config")
	root, err := config.Load(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !c.IsSet("config") {
			return config.DefaultRPCListen, nil
		}
		return "", cli.Exit(fmt.Sprintf("supervisor: reading %s to find rpc.listen (or pass --rpc): %v", path, err), 1)
	}
	return root.RPC.Listen, nil
}

// dialClient connects to the supervisor at addr; a failure is a cli exit
// error (code 1) that says what was dialled.
func dialClient(ctx context.Context, addr string) (*rpc.Client, error) {
	cl, err := rpc.Dial(ctx, addr)
	if err != nil {
		return nil, cli.Exit("supervisor: "+err.Error(), 1)
	}
	return cl, nil
}

// withClient dials the running supervisor and runs fn with a bounded ctx.
func withClient(c *cli.Context, fn func(ctx context.Context, cl *rpc.Client) error) error {
	addr, err := rpcAddress(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, clientTimeout)
	defer cancel()
	cl, err := dialClient(ctx, addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := fn(ctx, cl); err != nil {
		var ex cli.ExitCoder
		if errors.As(err, &ex) {
			return err
		}
		return cli.Exit("supervisor: "+err.Error(), 1)
	}
	return nil
}

func pushAction(c *cli.Context) error {
	payload := []byte(c.String("payload"))
	if f := c.String("payload-file"); f != "" {
		if c.IsSet("payload") {
			return cli.Exit("supervisor: --payload and --payload-file are exclusive", 2)
		}
		var err error
		if f == "-" {
			payload, err = io.ReadAll(os.Stdin)
		} else {
			payload, err = os.ReadFile(f)
		}
		if err != nil {
			return cli.Exit("supervisor: reading payload: "+err.Error(), 1)
		}
	}
	headers := map[string][]string{}
	for _, h := range c.StringSlice("header") {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return cli.Exit(fmt.Sprintf("supervisor: --header %q: want k=v", h), 2)
		}
		headers[k] = append(headers[k], v)
	}
	count, batch := c.Int("count"), c.Int("batch")
	if count < 1 {
		return cli.Exit("supervisor: --count must be at least 1", 2)
	}
	if batch < 1 {
		batch = 1
	}
	if c.Duration("delay") < 0 {
		return cli.Exit("supervisor: --delay must not be negative", 2)
	}
	template := consumer.Job{
		Name:     c.String("job"),
		Pipeline: c.String("pipeline"),
		Payload:  payload,
		Headers:  headers,
		Delay:    c.Duration("delay"),
		Priority: c.Int64("priority"),
		Key:      c.String("key"),
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		sum := pushSummary{start: time.Now()}
		lastID := ""
		for sum.sent < count {
			n := min(batch, count-sum.sent)
			jobs := make([]consumer.Job, n)
			for i := range jobs {
				jobs[i] = template
				jobs[i].ID = uuid.NewString()
				lastID = jobs[i].ID
			}
			var err error
			if n == 1 {
				err = cl.Push(ctx, jobs[0])
			} else {
				err = cl.PushBatch(ctx, jobs)
			}
			sum.add(jobs, err)
			if err != nil {
				// Later batches are not sent: they count as failed.
				sum.write(c.App.Writer, count, template.Pipeline)
				return fmt.Errorf("%d of %d jobs not confirmed: %w", count-sum.confirmed, count, err)
			}
		}
		if count > 1 {
			sum.write(c.App.Writer, count, template.Pipeline)
		} else {
			fmt.Fprintln(c.App.Writer, lastID)
		}
		return nil
	})
}

// maxDoubtIDs bounds the in-doubt job ids push prints.
const maxDoubtIDs = 20

// pushSummary counts what became of the jobs of a push command.
type pushSummary struct {
	start                      time.Time // before the first call
	sent                       int       // jobs in the calls made so far
	confirmed, failed, inDoubt int
	doubtIDs                   []string // the first maxDoubtIDs in-doubt ids
}

// add counts the jobs of one call that returned err (see rpc.PushReport).
func (s *pushSummary) add(jobs []consumer.Job, err error) {
	rep, _ := rpc.PushReport(len(jobs), err) // a report that does not fit the batch leaves it all in doubt
	s.sent += len(jobs)
	s.confirmed += len(rep.Confirmed)
	s.failed += len(rep.Failed)
	s.inDoubt += len(rep.InDoubt)
	for _, i := range rep.InDoubt {
		if len(s.doubtIDs) < maxDoubtIDs {
			s.doubtIDs = append(s.doubtIDs, jobs[i].ID)
		}
	}
}

// rate returns " in 1.2s (833 jobs/s)": the time the push took and the
// confirmed jobs per second; "" when none was confirmed.
func (s *pushSummary) rate(took time.Duration) string {
	if s.confirmed == 0 {
		return ""
	}
	if took <= 0 {
		took = time.Nanosecond
	}
	return fmt.Sprintf(" in %s (%.0f jobs/s)", took.Round(time.Millisecond), float64(s.confirmed)/took.Seconds())
}

// write prints the summary of a push of count jobs: confirmed, failed
// (jobs never sent included) and in doubt, with what each means.
func (s *pushSummary) write(w io.Writer, count int, pipeline string) {
	failed, notSent := s.failed+count-s.sent, count-s.sent
	if failed == 0 && s.inDoubt == 0 {
		fmt.Fprintf(w, "pushed %d jobs to %s: %d confirmed%s\n", count, pipeline, s.confirmed, s.rate(time.Since(s.start)))
		return
	}
	fmt.Fprintf(w, "push of %d jobs to %s: %d confirmed, %d failed, %d in doubt%s\n", count, pipeline, s.confirmed, failed, s.inDoubt, s.rate(time.Since(s.start)))
	if failed > 0 {
		fmt.Fprintf(w, "failed: %d jobs are not in the queue (%d of them never sent after the error); pushing them again is safe\n", failed, notSent)
	}
	if s.inDoubt > 0 {
		fmt.Fprintf(w, "in doubt: %d jobs were sent but their confirm was lost; they may be in the queue, and pushing them again may duplicate them\n", s.inDoubt)
		more := ""
		if s.inDoubt > len(s.doubtIDs) {
			more = fmt.Sprintf(" (and %d more)", s.inDoubt-len(s.doubtIDs))
		}
		fmt.Fprintf(w, "in doubt ids: %s%s\n", strings.Join(s.doubtIDs, " "), more)
	}
}

// statJSON is one entry of `jobs stat --json`: Pipevisor's exact numbers
// (ready: waiting on the broker, -1 unknown; active: received and not
// settled; delayed: waiting for a delay, -1 unknown), not the RoadRunner
// meanings jobs.Stat gives its active/delayed fields.
type statJSON struct {
	Pipeline  string `json:"pipeline"`
	Driver    string `json:"driver"`
	Queue     string `json:"queue"`
	Priority  int64  `json:"priority"`
	Ready     int64  `json:"ready"`
	Active    int64  `json:"active"`
	Delayed   int64  `json:"delayed"`
	Reserved  int64  `json:"reserved"`
	Acked     uint64 `json:"acked"`
	Retried   uint64 `json:"retried"`
	Requeued  uint64 `json:"requeued"`
	Dead      uint64 `json:"dead"`
	Consuming bool   `json:"consuming"`
	Error     string `json:"error,omitempty"`
	// Pool is the worker pool the pipeline runs on.
	Pool string `json:"pool,omitempty"`
}

func jobsStatAction(c *cli.Context) error {
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		stats, err := cl.Stat(ctx)
		if err != nil {
			return err
		}
		pools, err := cl.Pools(ctx)
		if err != nil {
			return err
		}
		poolOf := map[string]string{}
		for _, p := range pools {
			for _, pipe := range p.Pipelines {
				poolOf[pipe] = p.Name
			}
		}
		out := make([]statJSON, len(stats))
		for i, s := range stats {
			out[i] = statJSON{
				Pipeline: s.Pipeline, Driver: s.Driver, Queue: s.Queue, Priority: s.Priority,
				Ready: s.Ready, Active: s.Active, Delayed: s.Delayed, Reserved: s.Reserved,
				Acked: s.Acked, Retried: s.Retried, Requeued: s.Requeued, Dead: s.Dead,
				Consuming: s.Consuming, Error: s.Error, Pool: poolOf[s.Pipeline],
			}
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, out)
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PIPELINE\tDRIVER\tPOOL\tQUEUE\tSTATE\tQUEUED\tRUNNING\tDELAYED\tACKED\tRETRIED\tREQUEUED\tDEAD")
		for _, s := range out {
			state := "consuming"
			if !s.Consuming {
				state = "stopped"
				if s.Error != "" {
					state = "down: " + strings.Join(strings.Fields(s.Error), " ")
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\n", s.Pipeline, s.Driver, s.Pool, s.Queue, state,
				count(s.Ready), s.Active, count(s.Delayed), s.Acked, s.Retried, s.Requeued, s.Dead)
		}
		return tw.Flush()
	})
}

// count prints -1 (unknown) as "-".
func count(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func jobsListAction(c *cli.Context) error {
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		names, err := cl.List(ctx)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, names)
		}
		for _, n := range names {
			fmt.Fprintln(c.App.Writer, n)
		}
		return nil
	})
}

func pipelineArgs(c *cli.Context) ([]string, error) {
	if c.NArg() == 0 {
		return nil, cli.Exit("supervisor: name at least one pipeline", 2)
	}
	return c.Args().Slice(), nil
}

func jobsPauseAction(c *cli.Context) error {
	names, err := pipelineArgs(c)
	if err != nil {
		return err
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		if err := cl.Pause(ctx, names...); err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, "paused: "+strings.Join(unique(names), ", "))
		return nil
	})
}

// unique returns names without repeats, in their first order.
func unique(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func jobsResumeAction(c *cli.Context) error {
	names, err := pipelineArgs(c)
	if err != nil {
		return err
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		if err := cl.Resume(ctx, names...); err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, "resumed: "+strings.Join(unique(names), ", "))
		return nil
	})
}

func jobsDestroyAction(c *cli.Context) error {
	names, err := pipelineArgs(c)
	if err != nil {
		return err
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		done, err := cl.Destroy(ctx, names...)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, done)
		}
		fmt.Fprintln(c.App.Writer, "destroyed: "+strings.Join(done, ", "))
		return nil
	})
}

// resetAction is `reset [POOL]`: a rolling reset of every pool, or of
// the pool named.
func resetAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return cli.Exit("supervisor: reset takes at most one pool name", 2)
	}
	pool := c.Args().First()
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		if err := cl.ResetPool(ctx, pool); err != nil {
			return err
		}
		if pool != "" {
			fmt.Fprintf(c.App.Writer, "workers of pool %s reset\n", pool)
			return nil
		}
		fmt.Fprintln(c.App.Writer, "workers reset")
		return nil
	})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
