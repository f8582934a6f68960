package tests

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// poolWorker is one entry of `supervisor workers --json`.
type poolWorker struct {
	Pool  string `json:"pool"`
	Pid   int    `json:"pid"`
	State string `json:"state"`
}

// poolWorkers returns the live workers (ready or working) by pool.
func (s *supervisor) poolWorkers() map[string][]int {
	s.t.Helper()
	var ws []poolWorker
	if err := json.Unmarshal([]byte(s.mustCLI("workers", "--json")), &ws); err != nil {
		s.t.Fatal(err)
	}
	out := map[string][]int{}
	for _, w := range ws {
		if w.State == "ready" || w.State == "working" {
			out[w.Pool] = append(out[w.Pool], w.Pid)
		}
	}
	return out
}

// waitWorkers polls `workers --json` until cond holds (30s at most).
func (s *supervisor) waitWorkers(what string, cond func(map[string][]int) bool) map[string][]int {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws := s.poolWorkers()
		if cond(ws) {
			return ws
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s; workers %v", what, ws)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// idJobs returns n jobs named name for pipeline, with ids prefix-0...
func idJobs(pipeline, name, prefix, payload string, n int) ([]consumer.Job, []string) {
	jobs := make([]consumer.Job, n)
	ids := make([]string, n)
	for i := range jobs {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		jobs[i] = consumer.Job{ID: ids[i], Name: name, Pipeline: pipeline, Payload: []byte(payload)}
	}
	return jobs, ids
}

// logPids returns the pids that started jobs in a worker log.
func logPids(t *testing.T, log string) map[int]bool {
	t.Helper()
	pids := map[int]bool{}
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			var pid int
			fmt.Sscan(f[3], &pid)
			pids[pid] = true
		}
	}
	return pids
}

// TestPHPAndPythonPoolsEachServeTheirOwnPipeline: one supervisor runs a
// PHP pool (jobs.pool) and a Python pool (jobs.pools.py); each pipeline's
// jobs run only on its own pool's workers, `workers` shows each worker's
// pool, and `reset py` replaces the Python workers only.
func TestPHPAndPythonPoolsEachServeTheirOwnPipeline(t *testing.T) {
	requireTool(t, "php")
	requireTool(t, "python3")
	dir := t.TempDir()
	phpLog, pyLog := filepath.Join(dir, "php.log"), filepath.Join(dir, "py.log")
	s := startSupervisor(t, writeConfig(t, fmt.Sprintf(`version: "3"
rpc:
  listen: tcp://%s
server:
  command: %q
  env: {E2E_LOG: %q}
jobs:
  pool:
    num_workers: 2
  pools:
    py:
      command: %q
      env: {E2E_LOG: %q}
      num_workers: 2
  consume: [php-jobs, py-jobs]
  pipelines:
    php-jobs: {driver: memory}
    py-jobs: {driver: memory, pool: py}
`, freeAddr(t), behaveWorker, phpLog, pythonWorker, pyLog)))

	ws := s.waitWorkers("2 PHP and 2 Python workers", func(ws map[string][]int) bool {
		return len(ws["default"]) == 2 && len(ws["py"]) == 2
	})
	phpJobs, phpIDs := idJobs("php-jobs", "ack", "php", "x", 100)
	pyJobs, pyIDs := idJobs("py-jobs", "ack", "py", "x", 100)
	s.rpcPush(append(phpJobs, pyJobs...), 50)
	s.waitStat("php-jobs", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 100 })
	s.waitStat("py-jobs", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 100 })

	for _, c := range []struct {
		log, pool string
		ids       []string
	}{{phpLog, "default", phpIDs}, {pyLog, "py", pyIDs}} {
		d := dones(t, c.log)
		if got := slices.Sorted(maps.Keys(d)); !slices.Equal(got, slices.Sorted(slices.Values(c.ids))) {
			t.Errorf("pool %s ran %d jobs (%v...), want exactly its pipeline's 100", c.pool, len(got), got[:min(3, len(got))])
		}
		for id, n := range d {
			if n != 1 {
				t.Errorf("job %s ran %d times", id, n)
			}
		}
		for pid := range logPids(t, c.log) {
			if !slices.Contains(ws[c.pool], pid) {
				t.Errorf("a job of pool %s ran on pid %d, not one of its workers %v", c.pool, pid, ws[c.pool])
			}
		}
	}

	var stats []struct {
		Pipeline string `json:"pipeline"`
		Pool     string `json:"pool"`
	}
	if err := json.Unmarshal([]byte(s.mustCLI("jobs", "stat", "--json")), &stats); err != nil {
		t.Fatal(err)
	}
	pools := map[string]string{}
	for _, st := range stats {
		pools[st.Pipeline] = st.Pool
	}
	if want := map[string]string{"php-jobs": "default", "py-jobs": "py"}; !maps.Equal(pools, want) {
		t.Errorf("jobs stat pools %v, want %v", pools, want)
	}
	if out := s.mustCLI("jobs", "stat"); !regexp.MustCompile(`(?m)^py-jobs\s+memory\s+py\s`).MatchString(out) {
		t.Errorf("jobs stat has no POOL column with py for py-jobs:\n%s", out)
	}

	if out := s.mustCLI("workers"); !regexp.MustCompile(`(?m)^py\s+2\s+2\s+2\s+2\s+0\s+0\s+0\s+py-jobs$`).MatchString(out) {
		t.Errorf("workers has no summary line for pool py:\n%s", out)
	}
	if out := s.mustCLI("reset", "py"); !strings.Contains(out, "workers of pool py reset") {
		t.Errorf("reset py said %q", out)
	}
	after := s.poolWorkers()
	if !slices.Equal(slices.Sorted(slices.Values(after["default"])), slices.Sorted(slices.Values(ws["default"]))) {
		t.Errorf("reset py replaced PHP workers: %v -> %v", ws["default"], after["default"])
	}
	for _, pid := range after["py"] {
		if slices.Contains(ws["py"], pid) {
			t.Errorf("reset py kept Python worker %d", pid)
		}
	}
	if out, code := s.cli("reset", "nope"); code == 0 || !strings.Contains(out, `unknown worker pool "nope" (pools: default, py)`) {
		t.Errorf("reset nope: exit %d, %q", code, out)
	}
}

// TestSleepingPoolDoesNotDelayAnotherPool: every worker of pool sleepy
// is busy with a long job, and the fast pipeline on the default pool
// still runs all its jobs before any sleeping one finishes.
func TestSleepingPoolDoesNotDelayAnotherPool(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	log := filepath.Join(dir, "jobs.log")
	s := startSupervisor(t, writeConfig(t, fmt.Sprintf(`version: "3"
rpc:
  listen: tcp://%s
server:
  command: %q
  env: {E2E_LOG: %q}
jobs:
  shutdown_timeout: 1s
  pool:
    num_workers: 2
    destroy_timeout: 1s
  pools:
    sleepy:
      num_workers: 2
      destroy_timeout: 1s
  consume: [fast, slow]
  pipelines:
    fast: {driver: memory}
    slow: {driver: memory, pool: sleepy, concurrency: 8}
`, freeAddr(t), behaveWorker, log)))
	s.waitWorkers("both pools up", func(ws map[string][]int) bool { return len(ws["default"]) == 2 && len(ws["sleepy"]) == 2 })

	slow, slowIDs := idJobs("slow", "slow", "slow", "8000", 6)
	s.rpcPush(slow, 6)
	s.waitStat("slow", 30*time.Second, func(st pipelineStat) bool { return st.Active >= 2 })
	fast, fastIDs := idJobs("fast", "ack", "fast", "x", 300)
	s.rpcPush(fast, 100)
	s.waitStat("fast", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 300 })

	d := dones(t, log)
	for _, id := range fastIDs {
		if d[id] != 1 {
			t.Fatalf("fast job %s done %d times", id, d[id])
		}
	}
	for _, id := range slowIDs {
		if d[id] != 0 {
			t.Fatalf("slow job %s finished before the fast pipeline was done: the pools are not isolated", id)
		}
	}
	if st := s.stat("slow"); st.Acked != 0 || st.Active < 2 {
		t.Errorf("slow pipeline %+v, want its jobs still running", st)
	}
}

// TestDynamicAllocatorGrowsAndShrinks: RoadRunner's dynamic_allocator
// keys on jobs.pool; a burst of slow jobs grows the pool from 1 to
// 1 + max_workers, every job is acked once by id, and the pool is back to
// 1 after idle_timeout; /metrics counts the steps per pool.
func TestDynamicAllocatorGrowsAndShrinks(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	log := filepath.Join(dir, "jobs.log")
	metricsAddr := freeAddr(t)
	s := startSupervisor(t, writeConfig(t, fmt.Sprintf(`version: "3"
rpc:
  listen: tcp://%s
server:
  command: %q
  env: {E2E_LOG: %q}
metrics:
  address: %s
jobs:
  pool:
    num_workers: 1
    dynamic_allocator: {max_workers: 3, spawn_rate: 2, idle_timeout: 1s}
    supervisor: {watch_tick: 100ms}
  consume: [burst]
  pipelines:
    burst: {driver: memory}
`, freeAddr(t), behaveWorker, log, metricsAddr)))
	s.waitWorkers("1 worker", func(ws map[string][]int) bool { return len(ws["default"]) == 1 })

	jobs, ids := idJobs("burst", "slow", "b", "20", 2000)
	s.rpcPush(jobs, 500)
	s.waitWorkers("4 workers (1 + max_workers)", func(ws map[string][]int) bool { return len(ws["default"]) == 4 })
	s.waitStat("burst", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 2000 })
	d := dones(t, log)
	for _, id := range ids {
		if d[id] != 1 {
			t.Fatalf("job %s done %d times, want once", id, d[id])
		}
	}
	if len(d) != 2000 {
		t.Fatalf("%d distinct jobs done, want 2000", len(d))
	}
	if st := s.stat("burst"); st.Retried+st.Dead != 0 {
		t.Errorf("stat %+v: a job failed (ran on a stopped worker?)", st)
	}
	s.waitWorkers("back to 1 worker after idle_timeout", func(ws map[string][]int) bool { return len(ws["default"]) == 1 })

	_, body := httpGet(t, "http://"+metricsAddr+"/metrics")
	for name, ok := range map[string]func(float64) bool{
		"pipevisor_pool_scale_ups_total":   func(v float64) bool { return v >= 2 },
		"pipevisor_pool_scale_downs_total": func(v float64) bool { return v >= 1 },
		"pipevisor_pool_size":              func(v float64) bool { return v == 1 },
		"pipevisor_pool_max_workers":       func(v float64) bool { return v == 4 },
	} {
		v, found := metricValue(body, name, `pool="default"`)
		if !found || !ok(v) {
			t.Errorf("%s = %v (found %v)", name, v, found)
		}
	}
}

// TestPoolsExampleServes: examples/pools.rr.yaml validates and serves,
// each of its pipelines acking on its own pool.
func TestPoolsExampleServes(t *testing.T) {
	requireTool(t, "php")
	requireTool(t, "python3")
	if out, code := runCLI(t, "validate", "-c", "examples/pools.rr.yaml"); code != 0 || !strings.Contains(out, "ok (3 pipelines, 3 consumed, 5 workers)") {
		t.Fatalf("validate examples/pools.rr.yaml: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(testEnv.repoRoot, "examples", "pools.rr.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := startSupervisor(t, writeConfig(t, strings.Replace(string(b), "tcp://127.0.0.1:6001", "tcp://"+freeAddr(t), 1)))
	for _, p := range []string{"emails", "reports", "imports"} {
		s.mustCLI("push", "--pipeline", p, "--job", "Hello", "--payload", "{}", "--count", "20")
	}
	for _, p := range []string{"emails", "reports", "imports"} {
		s.waitStat(p, 60*time.Second, func(st pipelineStat) bool { return st.Acked == 20 })
	}
	ws := s.poolWorkers()
	if len(ws["default"]) != 2 || len(ws["py"]) != 2 || len(ws["bulk"]) < 1 {
		t.Errorf("workers by pool %v", ws)
	}
}

// TestBrokenPoolStopsTheStartNamingIt: a pool whose workers cannot start
// fails `serve` with an error naming the pool, even when the other pool
// starts.
func TestBrokenPoolStopsTheStartNamingIt(t *testing.T) {
	requireTool(t, "php")
	cfg := writeConfig(t, fmt.Sprintf(`version: "3"
rpc:
  listen: tcp://%s
server:
  command: %q
jobs:
  pool: {num_workers: 1}
  pools:
    broken: {command: "php -r exit(3);", num_workers: 1, allocate_timeout: 5s}
  consume: [a]
  pipelines:
    a: {driver: memory, pool: broken}
`, freeAddr(t), behaveWorker))
	out, code := runCLI(t, "serve", "-c", cfg)
	if code != 1 || !strings.Contains(out, "starting workers: pool broken: pool: no worker started") {
		t.Fatalf("serve with a broken pool: exit %d\n%s", code, out)
	}
}
