package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `workers --json` and `workers -i` show the running job and how long it
// has been running; -i redraws until SIGINT and then exits 0. --rpc takes
// host:port without a scheme, as RoadRunner's CLI does.
func TestWorkersLiveViewShowsTheRunningJob(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))
	hostPort := strings.TrimPrefix(s.rpcAddr(), "tcp://")

	pushed := time.Now()
	id := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "4000"))
	var ws []struct {
		Pid             int        `json:"pid"`
		CurrentJob      string     `json:"current_job"`
		CurrentJobSince *time.Time `json:"current_job_since"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := runCLI(t, "workers", "--json", "--rpc", hostPort)
		if code != 0 {
			t.Fatalf("workers --json --rpc %s: exit %d %s", hostPort, code, out)
		}
		if err := json.Unmarshal([]byte(out), &ws); err != nil {
			t.Fatalf("workers --json: %v in %q", err, out)
		}
		if len(ws) == 1 && ws[0].CurrentJob == id {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never shown as running: %s", id, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if since := ws[0].CurrentJobSince; since == nil || since.Before(pushed.Add(-time.Second)) || since.After(time.Now()) {
		t.Fatalf("current_job_since = %v, want a time after the push at %v", since, pushed)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testEnv.bin, "workers", "-i", "--interval", "200ms", "--rpc", hostPort)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A row: pool, pid, state, jobs, RSS, age, current job, running time.
	row := regexp.MustCompile(`^default\s+\d+\s+working\s+\d+\s+[\d.]+ MB\s+\S+\s+` + regexp.QuoteMeta(id) + `\s+(\S+)$`)
	sc := bufio.NewScanner(stdout)
	var runnings []time.Duration
	for len(runnings) < 2 && sc.Scan() {
		m := row.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("running time %q: %v", m[1], err)
		}
		runnings = append(runnings, d)
	}
	if len(runnings) < 2 {
		t.Fatalf("workers -i showed the running job in %d frames, want 2", len(runnings))
	}
	if runnings[1] <= runnings[0] {
		t.Fatalf("running time did not grow between frames: %v", runnings)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // the rest of the output, until the process exits
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("workers -i after SIGINT: %v, want exit 0", err)
	}
}
