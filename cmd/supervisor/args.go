package main

import "strings"

// valueFlags are the flags that take a separate value argument.
var valueFlags = map[string]bool{
	"-c": true, "--config": true, "-config": true, "--rpc": true, "-rpc": true,
	"-p": true, "--pipeline": true, "-j": true, "--job": true, "--payload": true, "--payload-file": true,
	"--key": true, "--header": true, "--delay": true, "--priority": true, "--count": true, "--batch": true,
}

// interspersed moves flags written after positional arguments in front of
// them, so `supervisor jobs pause default -c .rr.yaml` works like
// `supervisor jobs pause -c .rr.yaml default` (urfave/cli stops parsing flags
// at the first positional argument). Everything after "--" stays as is.
func interspersed(args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	// The command path: leading words that are not flags.
	i := 1
	for ; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
		out = append(out, args[i])
		if !isCommandWord(args[i]) {
			i++
			break
		}
	}
	var flags, pos []string
	if i > len(args) {
		i = len(args)
	}
	// A positional consumed by the loop above goes back to pos.
	if n := len(out); n > 1 && !isCommandWord(out[n-1]) {
		pos = append(pos, out[n-1])
		out = out[:n-1]
	}
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			if valueFlags[a] && i+1 < len(args) {
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

// isCommandWord reports whether w names a (sub)command of the CLI.
func isCommandWord(w string) bool {
	switch w {
	case "serve", "validate", "push", "jobs", "workers", "reset", "help",
		"list", "stat", "pause", "resume", "destroy":
		return true
	}
	return false
}
