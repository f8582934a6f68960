package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/pipevisor/pipevisor/config"
)

// newLogger builds the process logger from the logs: section (see
// config.Logs.NewLogger: mode, level, encoding, output), with w standing
// for stderr. When an output file can not be opened, logs go to w and the
// first line says why. Files opened stay open for the process's life.
func newLogger(l config.Logs, w io.Writer) *slog.Logger {
	log, _, err := l.NewLogger(os.Stdout, w)
	if err == nil {
		return log
	}
	l.Output = nil
	log, _, _ = l.NewLogger(os.Stdout, w) // stderr only: cannot fail
	log.Error("logging to stderr instead", "err", err)
	return log
}
