// Command fakeworker is the Go fake worker as a standalone binary for
// end-to-end tests. The mode comes from the first argument or, without
// one, from FAKEWORKER_MODE (default "ack"). See package fakeworker.
package main

import (
	"os"

	"github.com/pipevisor/pipevisor/internal/fakeworker"
)

func main() {
	mode := os.Getenv(fakeworker.ModeEnv)
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if mode == "" {
		mode = "ack"
	}
	os.Exit(fakeworker.Main(mode))
}
