package main

import (
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/urfave/cli/v2"

	"github.com/pipevisor/pipevisor/config"
)

// loadConfig loads path with config.Load. On failure it returns a cli exit
// error (code 1) whose text is one "path: reason" line per problem.
func loadConfig(path string) (*config.Root, error) {
	root, err := config.Load(path)
	if err == nil {
		return root, nil
	}
	problems := config.Errors(err)
	if len(problems) == 0 {
		return nil, cli.Exit(fmt.Sprintf("supervisor: %v", err), 1)
	}
	msg := fmt.Sprintf("supervisor: %s: %d problem(s):", path, len(problems))
	for _, p := range problems {
		msg += "\n  " + p.Error()
	}
	return nil, cli.Exit(msg, 1)
}

// warnings returns what is valid but probably wrong in root: the config's
// own warnings plus what only the running machine can tell (a worker
// command that is not installed, a systemd unit whose TimeoutStopSec is
// shorter than the shutdown grace period: unit names the unit file, ""
// looks for the usual places; see unitWarnings).
func warnings(root *config.Root, unit string) []string {
	var out []string
	for _, w := range root.Warnings {
		out = append(out, w.Error())
	}
	for _, name := range root.PoolNames() {
		cfg, _ := root.PoolConfigFor(name)
		if len(cfg.Command) == 0 {
			continue
		}
		if _, err := exec.LookPath(cfg.Command[0]); err != nil {
			key := "server.command"
			if names := root.PoolNames(); len(names) > 1 || name != config.DefaultPool {
				key = "command of pool " + name
			}
			out = append(out, fmt.Sprintf("%s: %q is not an executable on this machine: %v", key, cfg.Command[0], errors.Unwrap(err)))
		}
	}
	return append(out, unitWarnings(root, unit)...)
}

func validateAction(c *cli.Context) error {
	path := c.String("config")
	root, err := loadConfig(path)
	if err != nil {
		return err
	}
	printWarnings(c.App.ErrWriter, warnings(root, c.String("unit")))
	workers := 0
	for _, name := range root.PoolNames() {
		cfg, _ := root.PoolConfigFor(name)
		workers += cfg.NumWorkers
	}
	fmt.Fprintf(c.App.Writer, "%s: ok (%d pipelines, %d consumed, %d workers)\n", path,
		len(root.Jobs.Pipelines), len(root.Jobs.Consume), workers)
	return nil
}

func printWarnings(w io.Writer, ws []string) {
	for _, s := range ws {
		fmt.Fprintln(w, "warning:", s)
	}
}
