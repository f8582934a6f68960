package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// failingWorker fails each job the way its name says until the file "ok"
// exists next to its log (see the script).
const failingWorker = "php tests/testdata/workers/failing.php"

// failedPool is the jobs.pool of the failed-jobs tests: exec_ttl 1s cuts
// the "hang" jobs off.
const failedPool = `    num_workers: 2
    supervisor:
      exec_ttl: 1s
`

// failedRetry is the retry: section of the failed-jobs pipelines.
const failedRetry = `      retry:
        max_attempts: 2
        backoff: {initial: 100ms, max: 200ms, multiplier: 2, jitter: 0}
`

// failedRow is one entry of `jobs failed list --json` or `show --json`.
type failedRow struct {
	ID       string              `json:"id"`
	Pipeline string              `json:"pipeline"`
	Job      string              `json:"job"`
	Attempts int                 `json:"attempts"`
	DiedAt   *time.Time          `json:"died_at"`
	Reason   string              `json:"reason"`
	Headers  map[string][]string `json:"headers"`
	Payload  *string             `json:"payload"`
}

// failedList runs `jobs failed list --json` with args.
func (s *supervisor) failedList(args ...string) []failedRow {
	s.t.Helper()
	out := s.mustCLI(append([]string{"jobs", "failed", "list", "--json"}, args...)...)
	var rows []failedRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		s.t.Fatalf("jobs failed list --json: %v in %q", err, out)
	}
	return rows
}

// waitFailed polls `jobs failed list --json` until it holds n jobs.
func (s *supervisor) waitFailed(n int, timeout time.Duration) []failedRow {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rows := s.failedList()
		if len(rows) == n {
			return rows
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %d failed jobs; have %+v", n, rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pushOne pushes one job to pipeline default and returns its id.
func (s *supervisor) pushOne(job, payload string, extra ...string) string {
	s.t.Helper()
	out := s.mustCLI(append([]string{"push", "--pipeline", "default", "--job", job, "--payload", payload}, extra...)...)
	return strings.TrimSpace(out)
}

// failedJobs are the ids of the jobs killFour pushed, by job name.
type failedJobs map[string]string

// killFour pushes one job of each failing kind (nack with payload p1 and
// header x-tenant=acme, error, crash, hang) and waits until `jobs failed
// list` holds all four; it checks each reason and the fields of the nack.
func killFour(t *testing.T, s *supervisor) failedJobs {
	t.Helper()
	ids := failedJobs{"nack": s.pushOne("nack", "p1", "--header", "x-tenant=acme")}
	for _, name := range []string{"error", "crash", "hang"} {
		ids[name] = s.pushOne(name, "x")
	}
	rows := s.waitFailed(4, 90*time.Second)
	byID := map[string]failedRow{}
	for _, r := range rows {
		byID[r.ID] = r
	}
	want := map[string]struct {
		attempts int
		reason   []string
	}{
		"nack":  {1, []string{"bad input: p1"}},
		"error": {2, []string{"attempt 2 of 2 failed", "db down"}},
		"crash": {2, []string{"attempt 2 of 2 failed", "crashed during a job", "PHP Fatal error:  Allowed memory size exhausted in job " + ids["crash"]}},
		"hang":  {2, []string{"attempt 2 of 2 failed", "exec_ttl 1s exceeded"}},
	}
	for name, w := range want {
		r, ok := byID[ids[name]]
		if !ok {
			t.Fatalf("job %s (%s) not in jobs failed list: %+v", name, ids[name], rows)
		}
		if r.Job != name || r.Pipeline != "default" || r.Attempts != w.attempts || r.DiedAt == nil {
			t.Errorf("failed %s = %+v, want job %s, pipeline default, attempts %d, a time", name, r, name, w.attempts)
		}
		for _, part := range w.reason {
			if !strings.Contains(r.Reason, part) {
				t.Errorf("failed %s reason %q does not say %q", name, r.Reason, part)
			}
		}
	}
	return ids
}

// failedLifecycle runs what every driver must show once killFour's jobs
// are dead: list (table and --limit), show, retry of two (run again as
// attempt 1 with their headers and acked), unknown ids named, remove
// --all, and the usage errors.
func failedLifecycle(t *testing.T, s *supervisor, log string, ids failedJobs) {
	t.Helper()
	table := s.mustCLI("jobs", "failed", "list", "default")
	for _, head := range []string{"ID", "JOB", "ATTEMPTS", "DIED AT", "REASON"} {
		if !strings.Contains(table, head) {
			t.Errorf("jobs failed list table has no %s column:\n%s", head, table)
		}
	}
	if !strings.Contains(table, ids["nack"]) || !strings.Contains(table, "bad input: p1") {
		t.Errorf("jobs failed list table does not show the nacked job:\n%s", table)
	}
	if rows := s.failedList("--limit", "2"); len(rows) != 2 {
		t.Errorf("jobs failed list --limit 2 = %d jobs", len(rows))
	}
	show := s.mustCLI("jobs", "failed", "show", ids["nack"])
	for _, part := range []string{"id:        " + ids["nack"], "job:       nack", "header:    x-tenant=acme", "reason:    bad input: p1", "\np1\n"} {
		if !strings.Contains(show, part) {
			t.Errorf("jobs failed show does not print %q:\n%s", part, show)
		}
	}
	var one failedRow
	if err := json.Unmarshal([]byte(s.mustCLI("jobs", "failed", "show", "--json", ids["nack"])), &one); err != nil ||
		one.Payload == nil || *one.Payload != "p1" || !slices.Equal(one.Headers["x-tenant"], []string{"acme"}) {
		t.Errorf("jobs failed show --json = %+v, %v", one, err)
	}

	if err := os.WriteFile(filepath.Join(filepath.Dir(log), "ok"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := s.stat("default").Acked
	out := s.mustCLI("jobs", "failed", "retry", ids["nack"], ids["crash"])
	if !strings.Contains(out, "retried 2 failed jobs") {
		t.Errorf("jobs failed retry said %q", out)
	}
	s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == before+2 })
	lines := readLines(t, log)
	for _, want := range []string{"run " + ids["nack"] + " 1 nack ack acme", "run " + ids["crash"] + " 1 crash ack -"} {
		if !slices.Contains(lines, want) {
			t.Errorf("worker log has no %q (retried as attempt 1 with its headers): %q", want, lines)
		}
	}
	left := s.failedList()
	if len(left) != 2 || slices.ContainsFunc(left, func(r failedRow) bool { return r.ID == ids["nack"] || r.ID == ids["crash"] }) {
		t.Errorf("after retry jobs failed list = %+v, want error and hang", left)
	}

	if out, code := s.cli("jobs", "failed", "retry", "no-such-id"); code != 1 || !strings.Contains(out, "no such failed job") {
		t.Errorf("retry of an unknown id: exit %d %q", code, out)
	}
	if out, code := s.cli("jobs", "failed", "retry"); code != 2 || !strings.Contains(out, "IDs or --all") {
		t.Errorf("retry without ids: exit %d %q", code, out)
	}
	out = s.mustCLI("jobs", "failed", "remove", "--all")
	if !strings.Contains(out, "removed 2 failed jobs") {
		t.Errorf("jobs failed remove --all said %q", out)
	}
	if rows := s.failedList(); len(rows) != 0 {
		t.Errorf("after remove --all jobs failed list = %+v", rows)
	}
}

// TestMemoryFailedJobs: jobs that die on a memory pipeline for four
// reasons are listed with them, shown, retried (acked as attempt 1) and
// removed through the binary.
func TestMemoryFailedJobs(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, e2eConfigPool(t, failingWorker, log, failedPool, "", "      driver: memory\n"+failedRetry))
	ids := killFour(t, s)
	failedLifecycle(t, s, log, ids)
}

// clientRow is a failed job as tests/testdata/failed_client.{php,py}
// print it.
type clientRow struct {
	ID       string              `json:"id"`
	Pipeline string              `json:"pipeline"`
	Job      string              `json:"job"`
	Payload  string              `json:"payload"`
	Headers  map[string][]string `json:"headers"`
	Attempts int                 `json:"attempts"`
	Reason   string              `json:"reason"`
	Died     bool                `json:"died"`
}

// TestClientsFailedJobs: the PHP and Python producer clients list, show,
// retry and remove the failed jobs of a running supervisor.
func TestClientsFailedJobs(t *testing.T) {
	requireTool(t, "php")
	requireTool(t, "python3")
	for _, client := range [][]string{{"php", "tests/testdata/failed_client.php"}, {"python3", "tests/testdata/failed_client.py"}} {
		t.Run(client[0], func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "jobs.log")
			s := startConsuming(t, e2eConfigPool(t, failingWorker, log, failedPool, "", "      driver: memory\n"+failedRetry))
			run := func(out any, args ...string) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, client[0], append([]string{client[1], s.rpcAddr()}, args...)...)
				cmd.Dir = testEnv.repoRoot
				b, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s %v: %v\n%s", client[0], args, err, b)
				}
				if err := json.Unmarshal(b, out); err != nil {
					t.Fatalf("%s %v printed %q: %v", client[0], args, b, err)
				}
			}
			a := s.pushOne("nack", "pa", "--header", "x-tenant=acme")
			b := s.pushOne("nack", "pb")
			s.waitFailed(2, 30*time.Second)

			var rows []clientRow
			run(&rows, "list")
			if len(rows) != 2 || rows[0].ID != a || rows[1].ID != b {
				t.Fatalf("list = %+v, want %s and %s", rows, a, b)
			}
			if r := rows[0]; r.Pipeline != "default" || r.Job != "nack" || r.Payload != "pa" || !slices.Equal(r.Headers["x-tenant"], []string{"acme"}) ||
				r.Attempts != 1 || r.Reason != "bad input: pa" || !r.Died {
				t.Errorf("list[0] = %+v", r)
			}
			var one clientRow
			run(&one, "show", b)
			if one.ID != b || one.Payload != "pb" || one.Reason != "bad input: pb" {
				t.Errorf("show = %+v", one)
			}
			if err := os.WriteFile(filepath.Join(filepath.Dir(log), "ok"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			var ids []string
			run(&ids, "retry", a)
			if !slices.Equal(ids, []string{a}) {
				t.Errorf("retry = %v, want %s", ids, a)
			}
			s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
			run(&ids, "remove-all")
			if !slices.Equal(ids, []string{b}) {
				t.Errorf("remove-all = %v, want %s", ids, b)
			}
			if left := s.failedList(); len(left) != 0 {
				t.Errorf("failed jobs left: %+v", left)
			}
		})
	}
}
