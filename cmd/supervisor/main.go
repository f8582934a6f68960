// Command supervisor runs pools of PHP and Python job workers and feeds them
// jobs from RabbitMQ, Kafka, SQS or an in-memory queue (see the README).
//
// Subcommands: serve, validate, push, jobs (list|stat|pause|resume|destroy|failed),
// workers, reset, completion, man; `supervisor help [COMMAND]`. Client
// subcommands find the running supervisor through rpc.listen of the
// config file (-c, default ./.rr.yaml) or --rpc ADDR.
//
// This package is wiring only: it reads the config, constructs the pool, the
// drivers, the pipelines and the RPC server, and connects them.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(os.Args))
}

// run executes the CLI and returns the process exit code.
func run(args []string) int {
	app := newApp()
	g := grammarOf(app)
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		// `supervisor help [COMMAND...]` is `supervisor [COMMAND...] --help`;
		// an unknown command is an error that lists the commands.
		if args[1] == "help" {
			args = append(append([]string{args[0]}, args[2:]...), "--help")
		} else if g.commands.subs[args[1]] == nil {
			fmt.Fprintf(os.Stderr, "supervisor: unknown command %q; the commands are:\n", args[1])
			for _, c := range app.VisibleCommands() {
				fmt.Fprintf(os.Stderr, "  %-11s %s\n", c.Name, c.Usage)
			}
			fmt.Fprintln(os.Stderr, "Run 'supervisor help COMMAND' for its options.")
			return 2
		}
	}
	if err := app.Run(g.interspersed(args)); err != nil {
		if ec, ok := err.(cli.ExitCoder); ok {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, msg)
			}
			return ec.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "supervisor:", err)
		return 1
	}
	return 0
}

func newApp() *cli.App {
	configFlag := &cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Value:   ".rr.yaml",
		Usage:   "path of the .rr.yaml config file",
	}
	rpcFlag := &cli.StringFlag{
		Name:  "rpc",
		Usage: "RPC address of the running supervisor (tcp://host:port, host:port or unix://path); default: rpc.listen of the config",
	}
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}
	clientFlags := []cli.Flag{configFlag, rpcFlag}

	return &cli.App{
		Name:                 "supervisor",
		Usage:                "run PHP/Python job workers fed from RabbitMQ, Kafka, SQS or memory",
		Version:              versionString(),
		HideHelpCommand:      true, // `supervisor help [COMMAND]` is run's
		EnableBashCompletion: false,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() prints errors and picks the exit code
		Commands: []*cli.Command{
			{
				Name:  "serve",
				Usage: "run the supervisor in the foreground",
				Flags: []cli.Flag{configFlag, &cli.StringFlag{
					Name: "cpuprofile", Hidden: true, Usage: "write a CPU profile to this file (for performance work)",
				}, &cli.StringFlag{
					Name: "trace", Hidden: true, Usage: "write a runtime execution trace to this file (for performance work)",
				}},
				Action: serveAction,
			},
			{
				Name:   "validate",
				Usage:  "check a config file the way serve would; prints path: reason lines, exit 1 on errors",
				Flags:  []cli.Flag{configFlag, unitFlag},
				Action: validateAction,
			},
			{
				Name:  "push",
				Usage: "push jobs to a pipeline of the running supervisor",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "pipeline", Aliases: []string{"p"}, Required: true, Usage: "pipeline name"},
					&cli.StringFlag{Name: "job", Aliases: []string{"j"}, Required: true, Usage: "job name"},
					&cli.StringFlag{Name: "payload", Usage: "job payload"},
					&cli.StringFlag{Name: "payload-file", Usage: "read the payload from a file ('-' = stdin)"},
					&cli.StringFlag{Name: "key", Usage: "ordering key (Kafka key, SQS group, memory lane)"},
					&cli.StringSliceFlag{Name: "header", Usage: "header k=v (repeatable)"},
					&cli.DurationFlag{Name: "delay", Usage: "delay before the job is visible (e.g. 5s)"},
					&cli.Int64Flag{Name: "priority", Usage: "priority (lower is more urgent; 0 = pipeline default)"},
					&cli.IntFlag{Name: "count", Value: 1, Usage: "push this many copies (each its own id)"},
					&cli.IntFlag{Name: "batch", Value: 1000, Usage: "jobs per PushBatch call"},
				}, clientFlags...),
				Action: pushAction,
			},
			{
				Name:  "jobs",
				Usage: "inspect and steer the pipelines of the running supervisor",
				Subcommands: []*cli.Command{
					{Name: "list", Usage: "list pipelines", Flags: append([]cli.Flag{jsonFlag}, clientFlags...), Action: jobsListAction},
					{Name: "stat", Usage: "per-pipeline counters", Flags: append([]cli.Flag{jsonFlag}, clientFlags...), Action: jobsStatAction},
					{Name: "pause", Usage: "stop consuming (pushing still works)", ArgsUsage: "PIPELINE...", Flags: clientFlags, Action: jobsPauseAction},
					{Name: "resume", Usage: "start consuming again", ArgsUsage: "PIPELINE...", Flags: clientFlags, Action: jobsResumeAction},
					{Name: "destroy", Usage: "stop and remove pipelines (running jobs finish)", ArgsUsage: "PIPELINE...", Flags: append([]cli.Flag{jsonFlag}, clientFlags...), Action: jobsDestroyAction},
					failedCommand(jsonFlag, clientFlags),
				},
			},
			{
				Name:  "workers",
				Usage: "list worker processes (-i: a live view)",
				Flags: append([]cli.Flag{jsonFlag,
					&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "redraw the list every --interval until Ctrl-C"},
					&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "refresh period of -i"},
				}, clientFlags...),
				Action: workersAction,
			},
			{
				Name:      "reset",
				Usage:     "replace every worker one by one (rolling; no job is lost), of every pool or of POOL",
				ArgsUsage: "[POOL]",
				Flags:     clientFlags,
				Action:    resetAction,
			},
			completionCommand(),
			manCommand(),
		},
	}
}
