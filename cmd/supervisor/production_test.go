package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
)

const shippedUnit = "../../packaging/systemd/pipevisor.service"

// TestUnitFileVerifies runs `systemd-analyze verify` on the shipped unit.
// verify insists that ExecStart's binary exists, so the unit is checked
// with /usr/local/bin/supervisor pointing at a stand-in executable; every
// other line is verified as shipped. Warnings about the unit fail the test
// (systemd-analyze exits 0 on unknown keys and bad values).
func TestUnitFileVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("systemd-analyze is required in CI (scripts/setup.sh installs systemd): %v", err)
		}
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/supervisor serve -c /etc/pipevisor/.rr.yaml") {
		t.Fatal("ExecStart is not /usr/local/bin/supervisor serve -c /etc/pipevisor/.rr.yaml")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "supervisor")
	true_, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(true_)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pipevisor.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/supervisor", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "pipevisor.service") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
}

func TestUnitSettings(t *testing.T) {
	unit, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Type=notify", "NotifyAccess=main", "WatchdogSec=30s", "KillMode=mixed",
		"ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "User=pipevisor",
	} {
		if !strings.Contains(string(unit)+"\n", "\n"+line+"\n") {
			t.Errorf("unit lacks %q", line)
		}
	}
}

func TestShippedUnitCoversDefaultGrace(t *testing.T) {
	root := defaultedRoot(t, "")
	if ws := unitWarnings(root, shippedUnit); len(ws) != 0 {
		t.Fatalf("default config against the shipped unit: %v", ws)
	}
	stop, err := unitStopTimeout(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	if want := config.DefaultShutdownTimeout + config.DefaultPoolTimeout + stopSlack; stop < want {
		t.Fatalf("TimeoutStopSec %s < default grace %s", stop, want)
	}
}

// defaultedRoot parses a minimal config plus extra jobs keys.
func defaultedRoot(t *testing.T, jobsExtra string) *config.Root {
	t.Helper()
	root, err := config.Parse([]byte("version: \"3\"\nserver:\n  command: php worker.php\njobs:\n  consume: []\n" + jobsExtra))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestUnitWarnings(t *testing.T) {
	dir := t.TempDir()
	unit := func(body string) string {
		p := filepath.Join(dir, "u.service")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := defaultedRoot(t, "  shutdown_timeout: 60s\n  pool:\n    destroy_timeout: 20s\n") // grace 60+20+10 = 90s

	short := unit("[Unit]\nTimeoutStopSec=999\n[Service]\nExecStart=/x\nTimeoutStopSec=1min 20s\n")
	ws := unitWarnings(root, short)
	if len(ws) != 1 || !strings.Contains(ws[0], "1m30s is longer than TimeoutStopSec=1m20s") || !strings.Contains(ws[0], short) {
		t.Fatalf("warnings %q", ws)
	}
	ws = warnings(root, short)
	if !strings.Contains(strings.Join(ws, "\n"), "TimeoutStopSec=1m20s") {
		t.Fatalf("validate's warnings() lack the unit warning: %q", ws)
	}
	for body, want := range map[string]int{
		"[Service]\nTimeoutStopSec=90\n":        0,
		"[Service]\nTimeoutSec=2min\n":          0,
		"[Service]\nTimeoutSec=10s\n":           1,
		"[Service]\nTimeoutStopSec=infinity\n":  0,
		"[Service]\nExecStart=/x\n":             0, // systemd's default 90s
		"[Service]\nTimeoutStopSec=soon\n":      1, // unreadable: said so
		"[Service]\nTimeoutStopSec=1h\n# x=1\n": 0,
	} {
		if got := unitWarnings(root, unit(body)); len(got) != want {
			t.Errorf("%q: warnings %q, want %d", body, got, want)
		}
	}
	if ws := unitWarnings(root, filepath.Join(dir, "missing.service")); len(ws) != 1 {
		t.Fatalf("missing unit: %q", ws)
	}
}

func TestParseTimespan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90": 90 * time.Second, "90s": 90 * time.Second, "5min 30s": 5*time.Minute + 30*time.Second,
		"1h30min": 90 * time.Minute, "2.5s": 2500 * time.Millisecond, "500ms": 500 * time.Millisecond,
		"infinity": 0, "0": 0,
	} {
		if got, err := parseTimespan(in); err != nil || got != want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "5 parsecs", "s"} {
		if _, err := parseTimespan(in); err == nil {
			t.Errorf("parseTimespan(%q) accepted", in)
		}
	}
}
