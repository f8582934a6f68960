package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Log modes accepted in logs.mode (RoadRunner's names, any case).
const (
	LogModeDevelopment = "development"
	LogModeProduction  = "production"
	LogModeRaw         = "raw"
	LogModeOff         = "off"
	LogModeNone        = "none"
)

// LevelOff is the Level that logs.mode off (or none) sets: nothing is
// logged.
const LevelOff = "off"

// Logs is the logs: section (RoadRunner's logger keys).
//
// logs.mode sets the defaults of level and encoding the way RoadRunner's
// modes do; a level or encoding written next to it wins:
//   - development (RoadRunner's default mode): console, debug
//   - production: json, info
//   - raw: console, info (RoadRunner prints the bare message; here it is
//     a console line, with a warning)
//   - off or none: nothing is logged (Level becomes LevelOff)
//   - no mode: console, info (Pipevisor's defaults)
//
// output is implemented: stderr (the default), stdout or file paths
// (appended to), several at once; see Writer and NewLogger. err_output,
// line_ending other than "\n", format, time_format, skip_line_ending,
// file_logger_options (rotation) and channels (per-plugin loggers) are
// accepted and ignored with a warning.
type Logs struct {
	// Mode is development, production, raw, off or none (any case).
	Mode string `yaml:"mode"`
	// Level is debug, info, warn (or warning) or error, in any case;
	// RoadRunner's panic counts as error, with a warning. Load stores it
	// lower-cased ("warning" as "warn"), or LevelOff after mode off.
	Level string `yaml:"level"`
	// Encoding is console (human-readable text) or json.
	Encoding string `yaml:"encoding"`
	// Output lists where logs go: "stderr", "stdout" or a file path. A
	// single string is one entry. Empty means stderr.
	Output StringList `yaml:"output"`
	// ErrOutput is RoadRunner's logger-internal error output: ignored.
	ErrOutput StringList `yaml:"err_output"`
	// LineEnding is ignored unless "\n" (what every line ends with).
	LineEnding string `yaml:"line_ending"`
	// Format, TimeFormat and SkipLineEnding are RoadRunner's custom line
	// format: ignored.
	Format         string `yaml:"format"`
	TimeFormat     string `yaml:"time_format"`
	SkipLineEnding bool   `yaml:"skip_line_ending"`
	// FileLoggerOptions is RoadRunner's rotating file logger: ignored.
	FileLoggerOptions *FileLoggerOptions `yaml:"file_logger_options"`
	// Channels holds RoadRunner's per-plugin logger settings: ignored,
	// one logger serves the whole supervisor.
	Channels map[string]LogChannel `yaml:"channels"`
}

// LogChannel is one logs.channels entry (RoadRunner's keys).
type LogChannel struct {
	Mode              string             `yaml:"mode"`
	Level             string             `yaml:"level"`
	Encoding          string             `yaml:"encoding"`
	Output            StringList         `yaml:"output"`
	ErrOutput         StringList         `yaml:"err_output"`
	LineEnding        string             `yaml:"line_ending"`
	Format            string             `yaml:"format"`
	TimeFormat        string             `yaml:"time_format"`
	SkipLineEnding    bool               `yaml:"skip_line_ending"`
	FileLoggerOptions *FileLoggerOptions `yaml:"file_logger_options"`
}

// FileLoggerOptions is logs.file_logger_options (RoadRunner's keys).
type FileLoggerOptions struct {
	LogOutput  string `yaml:"log_output"`
	MaxSize    int    `yaml:"max_size"`
	MaxAge     int    `yaml:"max_age"`
	MaxBackups int    `yaml:"max_backups"`
	Compress   bool   `yaml:"compress"`
}

// StringList is a list of strings that may be written as one string.
type StringList []string

// decodeNode accepts a string or a list of strings.
func (l *StringList) decodeNode(n *yaml.Node, path string) []*Error {
	if n.Kind == yaml.ScalarNode {
		*l = StringList{n.Value}
		return nil
	}
	var s []string
	errs := decodeSlice(n, path, reflect.ValueOf(&s).Elem())
	*l = s
	return errs
}

// SlogLevel returns Level as a slog.Level: info for an unknown level
// (which Load never lets through), and a level above every record's for
// LevelOff.
func (l Logs) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error", "panic":
		return slog.LevelError
	case LevelOff:
		return slog.LevelError + 1000
	default:
		return slog.LevelInfo
	}
}

// Writer returns where logs go: each logs.output entry ("stderr",
// "stdout" or a file opened for appending, created 0644) with stdout and
// stderr standing for the process's; stderr when Output is empty. The
// closer closes the files it opened. A file that can not be opened is
// an error naming it.
func (l Logs) Writer(stdout, stderr io.Writer) (io.Writer, io.Closer, error) {
	if len(l.Output) == 0 {
		return stderr, closers(nil), nil
	}
	var ws []io.Writer
	var files closers
	for _, out := range l.Output {
		switch strings.ToLower(strings.TrimSpace(out)) {
		case "stderr":
			ws = append(ws, stderr)
		case "stdout":
			ws = append(ws, stdout)
		default:
			f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				_ = files.Close()
				return nil, nil, fmt.Errorf("logs.output: %w", err)
			}
			ws = append(ws, f)
			files = append(files, f)
		}
	}
	if len(ws) == 1 {
		return ws[0], files, nil
	}
	return io.MultiWriter(ws...), files, nil
}

// NewLogger builds the process logger from the section: Writer's
// destination, SlogLevel, and a JSON handler for encoding json, else a
// text handler; mode off discards everything. Durations are written with
// their unit ("1.5s"), also in JSON, where slog would write nanoseconds.
// Close the closer at exit.
func (l Logs) NewLogger(stdout, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	if l.Level == LevelOff {
		return slog.New(slog.DiscardHandler), closers(nil), nil
	}
	w, c, err := l.Writer(stdout, stderr)
	if err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: l.SlogLevel(), ReplaceAttr: durationString}
	if l.Encoding == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), c, nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), c, nil
}

// durationString writes a duration attribute as a string with its unit.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// closers closes every file it holds.
type closers []*os.File

func (cs closers) Close() error {
	var errs []error
	for _, f := range cs {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// applyMode fills Level and Encoding from Mode where they are not
// written (see Logs), then Pipevisor's defaults.
func (l *Logs) applyMode() {
	// RoadRunner reads levels in any case, and "warning" as warn.
	l.Level = strings.ToLower(strings.TrimSpace(l.Level))
	if l.Level == "warning" {
		l.Level = "warn"
	}
	level, encoding := DefaultLogLevel, DefaultLogEncoding
	switch strings.ToLower(l.Mode) {
	case LogModeDevelopment:
		level = "debug"
	case LogModeProduction:
		encoding = "json"
	case LogModeOff, LogModeNone:
		l.Level = LevelOff
	}
	if l.Level == "" {
		l.Level = level
	}
	if l.Encoding == "" {
		l.Encoding = encoding
	}
}

// validate checks the section and returns its errors and warnings.
func (l *Logs) validate() (errs, warnings []*Error) {
	add := func(list *[]*Error, path, format string, args ...any) {
		*list = append(*list, errAt(path, 0, format, args...))
	}
	switch strings.ToLower(l.Mode) {
	case "", LogModeDevelopment, LogModeProduction, LogModeOff, LogModeNone:
	case LogModeRaw:
		add(&warnings, "logs.mode", "raw: logs are console lines here (RoadRunner prints the bare message)")
	default:
		add(&errs, "logs.mode", "must be development, production, raw, off or none (got %s)", quote(l.Mode))
	}
	switch l.Level {
	case "debug", "info", "warn", "error", LevelOff:
	case "panic":
		add(&warnings, "logs.level", "panic is treated as error")
	default:
		add(&errs, "logs.level", "must be debug, info, warn or error (got %s)", quote(l.Level))
	}
	switch l.Encoding {
	case "console", "json":
	default:
		add(&errs, "logs.encoding", "must be console or json (got %s)", quote(l.Encoding))
	}
	for i, out := range l.Output {
		if strings.TrimSpace(out) == "" {
			add(&errs, indexPath("logs.output", i), "must be stderr, stdout or a file path")
		}
	}
	if len(l.ErrOutput) > 0 {
		add(&warnings, "logs.err_output", "ignored: the logger has no separate error output (use logs.output)")
	}
	if l.LineEnding != "" && l.LineEnding != "\n" {
		add(&warnings, "logs.line_ending", "ignored: every log line ends with \\n")
	}
	for _, f := range []struct {
		key string
		set bool
	}{{"format", l.Format != ""}, {"time_format", l.TimeFormat != ""}, {"skip_line_ending", l.SkipLineEnding}} {
		if f.set {
			add(&warnings, "logs."+f.key, "ignored: lines are written as logs.encoding says (console or json)")
		}
	}
	if l.FileLoggerOptions != nil {
		add(&warnings, "logs.file_logger_options", "ignored: log rotation is not implemented (write to a file with logs.output and rotate it with logrotate)")
	}
	if len(l.Channels) > 0 {
		add(&warnings, "logs.channels", "ignored: one logger serves the whole supervisor (per-plugin settings do not apply)")
	}
	return errs, warnings
}
