package main

import "fmt"

// Release identification, set at build time by scripts/release.sh:
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=abc1234 -X main.date=2026-12-07T20:00:00Z"
//
// A plain `go build` keeps the defaults.
var (
	version = "0.1.0-dev"
	commit  = "unknown"
	date    = "unknown"
)

// versionString is what `supervisor --version` prints after
// "supervisor version ": the release, its commit and build date.
func versionString() string {
	return fmt.Sprintf("%s (commit %s, built %s)", version, commit, date)
}
