package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// failedCommand is `supervisor jobs failed list|show|retry|remove`: the
// dead jobs of the running supervisor's pipelines.
func failedCommand(jsonFlag cli.Flag, clientFlags []cli.Flag) *cli.Command {
	pipelineFlag := &cli.StringFlag{Name: "pipeline", Aliases: []string{"p"}, Usage: "only this pipeline's failed jobs"}
	allFlag := &cli.BoolFlag{Name: "all", Usage: "every failed job (of --pipeline, or of every pipeline)"}
	return &cli.Command{
		Name:  "failed",
		Usage: "failed (dead) jobs: see why they died, retry them, remove them",
		Subcommands: []*cli.Command{
			{
				Name: "list", Usage: "list failed jobs (oldest first): id, job, attempts, died at, reason", ArgsUsage: "[PIPELINE]",
				Flags:  append([]cli.Flag{jsonFlag, &cli.IntFlag{Name: "limit", Usage: "at most this many jobs (0: all)"}}, clientFlags...),
				Action: failedListAction,
			},
			{
				Name: "show", Usage: "everything about one failed job, payload included", ArgsUsage: "ID",
				Flags:  append([]cli.Flag{jsonFlag, pipelineFlag}, clientFlags...),
				Action: failedShowAction,
			},
			{
				Name: "retry", Usage: "push failed jobs back to their pipeline as attempt 1 (removed from the failed jobs once the push is confirmed)",
				ArgsUsage: "ID...|--all", Flags: append([]cli.Flag{allFlag, pipelineFlag}, clientFlags...),
				Action: func(c *cli.Context) error { return failedDoAction(c, "retried", (*rpc.Client).FailedRetry) },
			},
			{
				Name: "remove", Usage: "delete failed jobs", ArgsUsage: "ID...|--all",
				Flags:  append([]cli.Flag{allFlag, pipelineFlag}, clientFlags...),
				Action: func(c *cli.Context) error { return failedDoAction(c, "removed", (*rpc.Client).FailedRemove) },
			},
		},
	}
}

// failedJSON is a failed job as --json prints it. Payload is the payload
// as text when it is valid UTF-8; otherwise PayloadBase64 holds it.
type failedJSON struct {
	ID            string              `json:"id"`
	Pipeline      string              `json:"pipeline"`
	Job           string              `json:"job"`
	Attempts      int                 `json:"attempts"`
	DiedAt        *time.Time          `json:"died_at"`
	Reason        string              `json:"reason"`
	Headers       map[string][]string `json:"headers,omitempty"`
	Priority      int64               `json:"priority,omitempty"`
	Key           string              `json:"key,omitempty"`
	Payload       *string             `json:"payload,omitempty"`
	PayloadBase64 []byte              `json:"payload_base64,omitempty"`
}

func toFailedJSON(d consumer.DeadJob) failedJSON {
	out := failedJSON{ID: d.Job.ID, Pipeline: d.Job.Pipeline, Job: d.Job.Name, Attempts: d.Attempts,
		Reason: d.Reason, Headers: d.Job.Headers, Priority: d.Job.Priority, Key: d.Job.Key}
	if !d.At.IsZero() {
		at := d.At.UTC()
		out.DiedAt = &at
	}
	if utf8.Valid(d.Job.Payload) {
		p := string(d.Job.Payload)
		out.Payload = &p
	} else {
		out.PayloadBase64 = d.Job.Payload
	}
	return out
}

// diedAt prints when a job died, "-" when unknown.
func diedAt(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// oneLine squeezes s onto one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func failedListAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return cli.Exit("supervisor: jobs failed list takes at most one PIPELINE", 2)
	}
	if c.Int("limit") < 0 {
		return cli.Exit("supervisor: --limit must not be negative", 2)
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		dead, err := cl.FailedList(ctx, c.Args().First(), c.Int("limit"))
		if err != nil {
			return err
		}
		if c.Bool("json") {
			out := make([]failedJSON, len(dead))
			for i, d := range dead {
				out[i] = toFailedJSON(d)
				out[i].Payload, out[i].PayloadBase64 = nil, nil // show has it
			}
			return writeJSON(c.App.Writer, out)
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPIPELINE\tJOB\tATTEMPTS\tDIED AT\tREASON")
		for _, d := range dead {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.Job.ID, d.Job.Pipeline, d.Job.Name, d.Attempts, diedAt(d.At), oneLine(d.Reason, 100))
		}
		return tw.Flush()
	})
}

func failedShowAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("supervisor: jobs failed show takes one ID", 2)
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		d, err := cl.FailedShow(ctx, c.String("pipeline"), c.Args().First())
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, toFailedJSON(d))
		}
		writeFailed(c.App.Writer, d)
		return nil
	})
}

// writeFailed prints one failed job as "name: value" lines, then its
// payload after a blank line.
func writeFailed(w io.Writer, d consumer.DeadJob) {
	fmt.Fprintf(w, "id:        %s\npipeline:  %s\njob:       %s\nattempts:  %d\ndied at:   %s\n",
		d.Job.ID, d.Job.Pipeline, d.Job.Name, d.Attempts, diedAt(d.At))
	if d.Job.Priority != 0 {
		fmt.Fprintf(w, "priority:  %d\n", d.Job.Priority)
	}
	if d.Job.Key != "" {
		fmt.Fprintf(w, "key:       %s\n", d.Job.Key)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Job.Headers)) {
		fmt.Fprintf(w, "header:    %s=%s\n", k, strings.Join(d.Job.Headers[k], ","))
	}
	fmt.Fprintf(w, "reason:    %s\n\n", d.Reason)
	if utf8.Valid(d.Job.Payload) {
		fmt.Fprintf(w, "%s\n", d.Job.Payload)
	} else {
		fmt.Fprintf(w, "(binary payload, %d bytes; --json prints it in base64)\n", len(d.Job.Payload))
	}
}

// failedDoAction runs retry or remove on the IDs given or on --all.
func failedDoAction(c *cli.Context, done string,
	op func(*rpc.Client, context.Context, string, consumer.DeadSelection) ([]string, error)) error {
	sel := consumer.DeadSelection{IDs: c.Args().Slice(), All: c.Bool("all")}
	if sel.All == (len(sel.IDs) > 0) {
		return cli.Exit(fmt.Sprintf("supervisor: jobs failed %s takes IDs or --all", c.Command.Name), 2)
	}
	return withClient(c, func(ctx context.Context, cl *rpc.Client) error {
		ids, err := op(cl, ctx, c.String("pipeline"), sel)
		if err != nil {
			var se *rpc.ServerError
			if errors.As(err, &se) && strings.Contains(se.Message, consumer.ErrDeadNotFound.Error()) {
				return fmt.Errorf("%s (the other ids were %s)", se.Message, done)
			}
			return err
		}
		fmt.Fprintf(c.App.Writer, "%s %d failed jobs\n", done, len(ids))
		for _, id := range ids {
			fmt.Fprintln(c.App.Writer, id)
		}
		return nil
	})
}
