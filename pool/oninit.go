package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DefaultInitTimeout is InitConfig.ExecTimeout when it is 0 (RoadRunner's
// default for server.on_init.exec_timeout).
const DefaultInitTimeout = 60 * time.Second

// ErrInit is wrapped by RunInit's error: the on_init command failed and
// ExitOnError says startup must stop.
var ErrInit = errors.New("on_init command failed")

// InitConfig is server.on_init: a command run once before the workers
// start (RoadRunner's keys).
type InitConfig struct {
	// Command is the program and its arguments (required).
	Command []string
	// ExecTimeout bounds the command's run; past it the command (its
	// whole process group) is killed. 0 means DefaultInitTimeout.
	ExecTimeout time.Duration
	// Env is added to the supervisor's environment for the command,
	// keys upper-cased and values ${VAR}-expanded from the supervisor's
	// environment, as RoadRunner does.
	Env map[string]string
	// ExitOnError makes a failure (a non-zero exit, a command that can
	// not start, or the timeout) stop startup; false logs it and goes on.
	ExitOnError bool
}

// RunInit runs cfg.Command once and waits for it, as RoadRunner's
// server.on_init does: its stdout and stderr are logged line by line at
// info level, it is killed after cfg.ExecTimeout (or when ctx ends). It
// returns nil when the command exited with status 0, or when it failed
// and cfg.ExitOnError is false (the failure is logged at error level);
// otherwise an error wrapping ErrInit that says what happened. An empty
// Command is an error whatever ExitOnError says. log may be nil.
func RunInit(ctx context.Context, cfg InitConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return fmt.Errorf("%w: no command", ErrInit)
	}
	timeout := cfg.ExecTimeout
	if timeout <= 0 {
		timeout = DefaultInitTimeout
	}
	err := runInit(ctx, cfg, timeout, log.With("on_init", cfg.Command[0]))
	if err == nil {
		return nil
	}
	if cfg.ExitOnError {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	log.Error("on_init command failed; starting anyway (exit_on_error is false)", "command", strings.Join(cfg.Command, " "), "err", err)
	return nil
}

// runInit runs the command under timeout and returns why it failed.
func runInit(ctx context.Context, cfg InitConfig, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, cfg.Command[0], cfg.Command[1:]...)
	cmd.Env = os.Environ()
	for k, v := range cfg.Env {
		cmd.Env = append(cmd.Env, strings.ToUpper(k)+"="+os.ExpandEnv(v))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a shell's children must not outlive it.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A child that escaped the group and holds the output pipe open must
	// not keep Wait from returning.
	cmd.WaitDelay = time.Second

	lw := &lineLogger{log: log}
	cmd.Stdout = lw
	cmd.Stderr = lw // the same writer: one pipe, lines stay whole
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cfg.Command[0], err)
	}
	err := cmd.Wait()
	lw.flush()
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("killed after exec_timeout %s", timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", ctx.Err())
	default:
		return err
	}
}

// lineLogger is an io.Writer that logs each complete line at info level.
// exec.Cmd writes to it from one goroutine, and flush runs after Wait.
type lineLogger struct {
	log *slog.Logger
	buf []byte
}

// maxInitLine is the longest line kept whole; longer ones are logged in
// pieces.
const maxInitLine = 64 * 1024

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.log.Info(strings.TrimSuffix(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > maxInitLine {
		l.flush()
	}
	return len(p), nil
}

// flush logs what is left without a trailing newline.
func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.log.Info(string(l.buf))
	}
	l.buf = nil
}
