package pool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunInitRunsCommandWithEnv: the command runs once, with the
// supervisor's environment plus on_init.env (keys upper-cased, values
// ${VAR}-expanded), and its output is logged line by line.
func TestRunInitRunsCommandWithEnv(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	t.Setenv("PV_INIT_OUTER", "outer")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	err := RunInit(context.Background(), InitConfig{
		Command: []string{"sh", "-c", `printf '%s %s' "$FOO" "$PV_INIT_OUTER" >> "$0"; echo first; echo second >&2`, out},
		Env:     map[string]string{"foo": "${PV_INIT_OUTER}-x"},
	}, log)
	if err != nil {
		t.Fatalf("RunInit: %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil || string(got) != "outer-x outer" {
		t.Fatalf("the command wrote %q (%v), want %q once", got, err, "outer-x outer")
	}
	if s := logs.String(); !strings.Contains(s, "msg=first") || !strings.Contains(s, "msg=second") {
		t.Errorf("output lines not logged: %s", s)
	}
}

// TestRunInitFailure: a non-zero exit stops startup only with
// exit_on_error.
func TestRunInitFailure(t *testing.T) {
	cfg := InitConfig{Command: []string{"sh", "-c", "exit 3"}, ExitOnError: true}
	err := RunInit(context.Background(), cfg, nil)
	if !errors.Is(err, ErrInit) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("exit 3 with exit_on_error = %v, want ErrInit naming exit status 3", err)
	}
	cfg.ExitOnError = false
	if err := RunInit(context.Background(), cfg, nil); err != nil {
		t.Fatalf("exit 3 without exit_on_error = %v, want nil", err)
	}
	cfg = InitConfig{Command: []string{filepath.Join(t.TempDir(), "missing")}, ExitOnError: true}
	if err := RunInit(context.Background(), cfg, nil); !errors.Is(err, ErrInit) {
		t.Fatalf("missing program = %v, want ErrInit", err)
	}
	if err := RunInit(context.Background(), InitConfig{}, nil); !errors.Is(err, ErrInit) {
		t.Fatalf("no command = %v, want ErrInit", err)
	}
}

// TestRunInitTimeout: past exec_timeout the command and its children are
// killed; the timeout stops startup only with exit_on_error.
func TestRunInitTimeout(t *testing.T) {
	for _, exitOnError := range []bool{true, false} {
		pidFile := filepath.Join(t.TempDir(), "pid")
		cfg := InitConfig{
			// The shell's child writes its pid and sleeps: both must die.
			Command:     []string{"sh", "-c", `sh -c 'echo $$ > "$0"; exec sleep 60' "$0" & wait`, pidFile},
			ExecTimeout: 300 * time.Millisecond,
			ExitOnError: exitOnError,
		}
		start := time.Now()
		err := RunInit(context.Background(), cfg, nil)
		if exitOnError && (!errors.Is(err, ErrInit) || !strings.Contains(err.Error(), "exec_timeout")) {
			t.Fatalf("timeout with exit_on_error = %v, want ErrInit naming exec_timeout", err)
		}
		if !exitOnError && err != nil {
			t.Fatalf("timeout without exit_on_error = %v, want nil", err)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("RunInit returned after %v", el)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatalf("child pid: %v", err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid <= 0 || !gone(pid, 5*time.Second) {
			t.Errorf("child %d of the init command is still running", pid)
		}
	}
}

// gone waits up to within for pid to exit (SIGKILL is delivered
// asynchronously) and reports whether it did.
func gone(pid int, within time.Duration) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(within)
	for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
		select {
		case <-tick.C:
		case <-deadline:
			return false
		}
	}
	return true
}

// isZombie reports whether pid has exited but not been reaped.
func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // gone
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

// TestRunInitContext: a cancelled ctx stops the command.
func TestRunInitContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := RunInit(ctx, InitConfig{Command: []string{"sleep", "60"}, ExitOnError: true}, nil)
	if !errors.Is(err, ErrInit) {
		t.Fatalf("cancelled ctx = %v, want ErrInit", err)
	}
}
