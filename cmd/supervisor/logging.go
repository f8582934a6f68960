package main

import (
	"io"
	"log/slog"

	"github.com/pipevisor/pipevisor/config"
)

// newLogger builds the process logger from logs.level and logs.encoding.
func newLogger(l config.Logs, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Encoding == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
