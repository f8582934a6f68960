package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// grammar is what interspersed needs to know about the CLI: which words
// are (sub)commands and which flags take a separate value.
type grammar struct {
	commands   map[string]bool
	valueFlags map[string]bool
}

// grammarOf collects the command names and value-taking flags of app,
// walking every (sub)command, so the two never drift apart.
func grammarOf(app *cli.App) grammar {
	g := grammar{commands: map[string]bool{"help": true}, valueFlags: map[string]bool{}}
	addFlags := func(fs []cli.Flag) {
		for _, f := range fs {
			if _, isBool := f.(*cli.BoolFlag); isBool {
				continue
			}
			for _, n := range f.Names() {
				g.valueFlags["-"+n] = true
				g.valueFlags["--"+n] = true
			}
		}
	}
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for _, n := range c.Names() {
				g.commands[n] = true
			}
			addFlags(c.Flags)
			walk(c.Subcommands)
		}
	}
	addFlags(app.Flags)
	walk(app.Commands)
	return g
}

// interspersed moves flags written after positional arguments in front of
// them, so `supervisor jobs pause default -c .rr.yaml` works like
// `supervisor jobs pause -c .rr.yaml default` (urfave/cli stops parsing flags
// at the first positional argument). Everything after "--" stays as is.
func (g grammar) interspersed(args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	i := 1
	for ; i < len(args) && g.commands[args[i]]; i++ {
		out = append(out, args[i])
	}
	var flags, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			if g.valueFlags[a] && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	out = append(out, flags...)
	return append(out, pos...)
}
