package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const poolsHead = `version: "3"
server:
  command: "php worker.php"
  env: {APP_ENV: prod, shared: server}
`

func TestNamedPoolsLoad(t *testing.T) {
	r, err := Parse([]byte(poolsHead + `
jobs:
  pool:
    num_workers: 3
  pools:
    py:
      command: "python3 worker.py"
      env: {shared: py, py_only: "1"}
      num_workers: 2
      max_jobs: 50
      pipelining: 4
      supervisor: {watch_tick: 2s, exec_ttl: 30s}
  pipelines:
    emails: {driver: memory}
    reports: {driver: memory, pool: py}
    invoices: {driver: memory, pool: default, concurrency: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.PoolNames(); !slices.Equal(got, []string{"default", "py"}) {
		t.Fatalf("PoolNames = %v", got)
	}
	def, ok := r.PoolConfigFor("default")
	if !ok || def.NumWorkers != 3 || !slices.Equal(def.Command, []string{"php", "worker.php"}) || def.Env["SHARED"] != "server" {
		t.Errorf("default = %+v", def)
	}
	py, ok := r.PoolConfigFor("py")
	if !ok || py.NumWorkers != 2 || py.MaxJobs != 50 || py.Pipelining != 4 || py.Supervisor.ExecTTL != 30*time.Second ||
		py.AllocateTimeout != DefaultPoolTimeout || !slices.Equal(py.Command, []string{"python3", "worker.py"}) {
		t.Errorf("py = %+v", py)
	}
	if py.Env["SHARED"] != "py" || py.Env["PY_ONLY"] != "1" || py.Env["APP_ENV"] != "prod" || py.Env["RR_RPC"] != DefaultRPCListen {
		t.Errorf("py env = %v", py.Env)
	}
	if _, ok := r.PoolConfigFor("nope"); ok {
		t.Error("PoolConfigFor(nope) found a pool")
	}
	p := r.Jobs.Pipelines
	for name, want := range map[string]struct {
		pool string
		conc int
	}{"emails": {"default", 3}, "reports": {"py", 4}, "invoices": {"default", 1}} { // py pipelines: two slots per worker
		if got := r.Jobs.PoolOf(p[name]); got != want.pool || p[name].Concurrency != want.conc {
			t.Errorf("%s: pool %s, concurrency %d; want %s, %d", name, got, p[name].Concurrency, want.pool, want.conc)
		}
	}
}

func TestPoolsDefaultNamedDefault(t *testing.T) {
	r, err := Parse([]byte(poolsHead + `
jobs:
  pools:
    default: {num_workers: 5}
    other: {num_workers: 1}
  pipelines:
    a: {driver: memory}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.PoolNames(); !slices.Equal(got, []string{"default", "other"}) {
		t.Fatalf("PoolNames = %v", got)
	}
	if c := r.PoolConfig(); c.NumWorkers != 5 || r.Jobs.Pipelines["a"].Concurrency != 5 {
		t.Errorf("default pool %d workers, pipeline concurrency %d; want 5, 5", c.NumWorkers, r.Jobs.Pipelines["a"].Concurrency)
	}
}

func TestPoolScalingKeys(t *testing.T) {
	r, err := Parse([]byte(poolsHead + `
jobs:
  pool:
    num_workers: 2
    dynamic_allocator: {max_workers: 6, spawn_rate: 3, idle_timeout: 10s}
  pools:
    auto:
      autoscale: {min: 1, max: 8, wait_threshold: 500ms}
    rrdefaults:
      num_workers: 4
      dynamic_allocator: {}
  pipelines:
    a: {driver: memory}
    b: {driver: memory, pool: auto}
`))
	if err != nil {
		t.Fatal(err)
	}
	def := r.PoolConfig()
	if def.NumWorkers != 2 || def.Scale.Max != 8 || def.Scale.SpawnRate != 3 || def.Scale.IdleTimeout != 10*time.Second {
		t.Errorf("dynamic_allocator: %d workers, scale %+v; want 2 up to 2+6, 3 per tick, 10s", def.NumWorkers, def.Scale)
	}
	auto, _ := r.PoolConfigFor("auto")
	if auto.NumWorkers != 1 || auto.Scale.Max != 8 || auto.Scale.SpawnRate != DefaultSpawnRate ||
		auto.Scale.IdleTimeout != DefaultScaleIdle || auto.Scale.WaitThreshold != 500*time.Millisecond {
		t.Errorf("autoscale: %d workers, scale %+v", auto.NumWorkers, auto.Scale)
	}
	rr, _ := r.PoolConfigFor("rrdefaults")
	if rr.Scale.Max != 4+DefaultDynamicMaxWorkers || rr.Scale.SpawnRate != 5 || rr.Scale.IdleTimeout != time.Minute {
		t.Errorf("dynamic_allocator defaults: %+v", rr.Scale)
	}
	// A pipeline gets a slot per worker its pool may grow to.
	if a, b := r.Jobs.Pipelines["a"].Concurrency, r.Jobs.Pipelines["b"].Concurrency; a != 8 || b != 8 {
		t.Errorf("concurrency a=%d b=%d, want 8 and 8", a, b)
	}
}

func TestPoolValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown pool", `
jobs:
  pools: {php: {num_workers: 1}}
  pipelines:
    a: {driver: memory, pool: phpp}
`, []string{`jobs.pipelines.a.pool: unknown pool "phpp" (pools: php) (line 5)`}},
		{"no default pool", `
jobs:
  pools: {php: {num_workers: 1}, py: {num_workers: 1}}
  pipelines:
    a: {driver: memory}
`, []string{`jobs.pipelines.a.pool: required: no default pool to run on (jobs.pool is not written and jobs.pools has no "default"; pools: php, py) (line 5)`}},
		{"min over max", `
jobs:
  pools:
    php:
      autoscale: {min: 4, max: 2}
`, []string{`jobs.pools.php.autoscale.max: must be >= min (4), got 2 (line 5)`}},
		{"both scalings", `
jobs:
  pool:
    dynamic_allocator: {max_workers: 2}
    autoscale: {min: 1, max: 3}
`, []string{`jobs.pool.autoscale: write one of autoscale and dynamic_allocator (line 5)`}},
		{"default twice", `
jobs:
  pool: {num_workers: 1}
  pools: {default: {num_workers: 2}}
`, []string{`jobs.pools.default: the default pool is jobs.pool here: write it once, under jobs.pool or under jobs.pools.default (line 4)`}},
		{"bad pool values", `
jobs:
  pools:
    big: {num_workers: 501, pipelining: 65}
    auto: {autoscale: {min: 1, max: 600, spawn_rate: 101}}
`, []string{
			`jobs.pools.big.num_workers: must be from 0 to 500 (0 means one per CPU; got 501) (line 4)`,
			`jobs.pools.big.pipelining: must be from 1 to 64, the most jobs written to one worker ahead of its replies (0 means 1; got 65) (line 4)`,
			`jobs.pools.auto.autoscale.max: must be at most 500 (got 600) (line 5)`,
			`jobs.pools.auto.autoscale.spawn_rate: must be from 1 to 100 (got 101) (line 5)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(`version: "3"
` + strings.TrimPrefix(tc.yaml, "\n")))
			got := errorStrings(err)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("missing error %q\ngot:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

func TestPoolCommandFromServerOrPool(t *testing.T) {
	// Every pool has its own command: server.command may be absent.
	if _, err := Parse([]byte(`version: "3"
jobs:
  pools:
    php: {command: "php w.php"}
    py: {command: "python3 w.py"}
`)); err != nil {
		t.Errorf("pools with their own commands: %v", err)
	}
	_, err := Parse([]byte(`version: "3"
jobs:
  pools:
    php: {command: "php w.php"}
    py: {num_workers: 1}
`))
	if got := errorStrings(err); !slices.Contains(got, "jobs.pools.py.command: required (or server.command): the command that starts one of this pool's workers (line 5)") {
		t.Errorf("errors %v", got)
	}
}

func TestNamedPoolIgnoredKeysWarn(t *testing.T) {
	r, err := Parse([]byte(poolsHead + `
jobs:
  pools:
    default: {num_workers: 1}
    py: {num_workers: 1, debug: true, max_queue_size: 10}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range r.Warnings {
		got = append(got, w.Error())
	}
	for _, want := range []string{
		"jobs.pools.py.debug: ignored: workers are long-lived (max_jobs: 1 replaces a worker after each job) (line 9)",
		"jobs.pools.py.max_queue_size: ignored: a pipeline takes no job from its broker without a free slot, so nothing queues for workers (line 9)",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing warning %q in %v", want, got)
		}
	}
}

// A pipeline gets two slots per worker with pipelining; only a
// concurrency above that is warned about.
func TestConcurrencyAboveTheSlotsAPoolKeepsBusyWarns(t *testing.T) {
	r, err := Parse([]byte(poolsHead + `
jobs:
  pool: {num_workers: 2, pipelining: 4}
  pipelines:
    fits: {driver: memory, concurrency: 4}
    over: {driver: memory, concurrency: 5}
    unset: {driver: memory}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range r.Warnings {
		got = append(got, w.Error())
	}
	want := "jobs.pipelines.over.concurrency: 5 is more than jobs.pool keeps busy (2 workers, 4 slots): the extra jobs wait for a free worker"
	if len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("warnings %q; want one: %q", got, want)
	}
	if c := r.Jobs.Pipelines["unset"].Concurrency; c != 4 {
		t.Errorf("unset concurrency %d, want 4 (two slots per worker with pipelining)", c)
	}
}
