package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipevisor/pipevisor/config"
)

// TestNewLoggerOutput: logs.output sends the lines to a file (not to
// stderr); a file that can not be opened falls back to stderr and says so.
func TestNewLoggerOutput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "supervisor.log")
	var stderr bytes.Buffer
	newLogger(config.Logs{Level: "info", Encoding: "json", Output: config.StringList{file}}, &stderr).Info("to the file")
	data, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(data), `"msg":"to the file"`) || stderr.Len() != 0 {
		t.Fatalf("file %q (%v), stderr %q", data, err, stderr.String())
	}

	bad := filepath.Join(t.TempDir(), "missing", "supervisor.log")
	newLogger(config.Logs{Level: "info", Encoding: "console", Output: config.StringList{bad}}, &stderr).Info("still logged")
	if s := stderr.String(); !strings.Contains(s, "logging to stderr instead") || !strings.Contains(s, "still logged") {
		t.Fatalf("stderr %q", s)
	}
}
