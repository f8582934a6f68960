package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// grammar is what interspersed needs to know about the CLI: the command
// tree and which flags take a separate value.
type grammar struct {
	commands   *cmdNode
	valueFlags map[string]bool
}

// cmdNode is one level of the command tree: the subcommands by name.
type cmdNode struct {
	subs map[string]*cmdNode
}

// grammarOf collects the command tree and value-taking flags of app,
// walking every (sub)command, so the two never drift apart.
func grammarOf(app *cli.App) grammar {
	g := grammar{valueFlags: map[string]bool{}}
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
	var walk func(cmds []*cli.Command) *cmdNode
	walk = func(cmds []*cli.Command) *cmdNode {
		node := &cmdNode{subs: map[string]*cmdNode{}}
		for _, c := range cmds {
			sub := walk(c.Subcommands)
			for _, n := range c.Names() {
				node.subs[n] = sub
			}
			addFlags(c.Flags)
		}
		return node
	}
	addFlags(app.Flags)
	g.commands = walk(app.Commands)
	g.commands.subs["help"] = &cmdNode{subs: map[string]*cmdNode{}}
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
	// The command path: each word must name a subcommand of the one
	// before it; the first word that does not is a positional argument
	// (a pipeline may be called "reset").
	for node := g.commands; i < len(args); i++ {
		next := node.subs[args[i]]
		if next == nil {
			break
		}
		out = append(out, args[i])
		node = next
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
