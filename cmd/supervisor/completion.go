package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionCommand is `supervisor completion bash|zsh|fish`: a completion
// script for the shell, made from the command tree itself.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash: source <(supervisor completion bash)\n" +
			"zsh:  source <(supervisor completion zsh)\n" +
			"fish: supervisor completion fish | source",
		Action: func(c *cli.Context) error {
			shell := c.Args().First()
			var script string
			var err error
			switch shell {
			case "bash":
				script = bashCompletion(c.App)
			case "zsh":
				// zsh runs the bash function through bashcompinit.
				script = "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n" + bashCompletion(c.App)
			case "fish":
				script, err = c.App.ToFishCompletion()
			default:
				return cli.Exit(fmt.Sprintf("supervisor: completion: want bash, zsh or fish, got %q", shell), 2)
			}
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.App.Writer, script)
			return err
		},
	}
}

// manCommand is `supervisor man`: the manual page (roff), made from the
// command tree: `supervisor man | man -l -`.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (roff; view it with: supervisor man | man -l -)",
		Action: func(c *cli.Context) error {
			page, err := c.App.ToMan()
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.App.Writer, page)
			return err
		},
	}
}

// bashCompletion returns a bash script that completes the command path
// word by word, then the flags of the command reached.
func bashCompletion(app *cli.App) string {
	var subs, words strings.Builder
	var walk func(path string, cmds []*cli.Command, flags []cli.Flag)
	walk = func(path string, cmds []*cli.Command, flags []cli.Flag) {
		var names []string
		for _, c := range cmds {
			if !c.Hidden {
				names = append(names, c.Names()...)
			}
		}
		var all []string
		all = append(all, names...)
		for _, f := range flags {
			if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				if len(n) == 1 {
					all = append(all, "-"+n)
				} else {
					all = append(all, "--"+n)
				}
			}
		}
		slices.Sort(names)
		fmt.Fprintf(&subs, "    %q) echo %q ;;\n", path, strings.Join(names, " "))
		fmt.Fprintf(&words, "    %q) echo %q ;;\n", path, strings.Join(all, " "))
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			p := strings.TrimSpace(path + " " + c.Name)
			walk(p, c.Subcommands, c.Flags)
		}
	}
	walk("", app.VisibleCommands(), []cli.Flag{&cli.BoolFlag{Name: "help", Aliases: []string{"h"}}, &cli.BoolFlag{Name: "version", Aliases: []string{"v"}}})
	return `# bash completion for supervisor: source <(supervisor completion bash)
_supervisor_subs() {
  case "$1" in
` + subs.String() + `  esac
}
_supervisor_words() {
  case "$1" in
` + words.String() + `  esac
}
_supervisor() {
  local cur="${COMP_WORDS[COMP_CWORD]}" path="" i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    case "$w" in -*) continue ;; esac
    case " $(_supervisor_subs "$path") " in
      *" $w "*) path="${path:+$path }$w" ;;
    esac
  done
  COMPREPLY=($(compgen -W "$(_supervisor_words "$path")" -- "$cur"))
}
complete -F _supervisor supervisor
`
}
