package config

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.want from the current output")

// unsetEnv removes name from the environment for the duration of the test.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value after the test
	os.Unsetenv(name)
}

func TestLoadFullExample(t *testing.T) {
	unsetEnv(t, "APP_ENV")
	t.Setenv("DATABASE_URL", "postgres://db.internal/app")

	r, err := Load("testdata/full.rr.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if r.Version != "3" || r.RPC.Listen != "tcp://127.0.0.1:6001" || r.RPC.MaxConnections != 256 || r.RPC.MaxInflightBytes != 64<<20 {
		t.Errorf("version/rpc: got %q %+v", r.Version, r.RPC)
	}
	if want := []string{"php", "worker.php"}; !slices.Equal(r.Server.Command, want) {
		t.Errorf("server.command = %q, want %q", r.Server.Command, want)
	}
	if r.Server.Env["APP_ENV"] != "production" || r.Server.Env["DATABASE_URL"] != "postgres://db.internal/app" {
		t.Errorf("server.env = %v", r.Server.Env)
	}
	wantPool := pool.Config{
		Command:         []string{"php", "worker.php", "--queue-worker"},
		NumWorkers:      4,
		MaxJobs:         1000,
		AllocateTimeout: 60 * time.Second,
		DestroyTimeout:  60 * time.Second,
		ResetTimeout:    60 * time.Second,
		Pipelining:      1,
		Supervisor: pool.Supervisor{
			WatchTick:       5 * time.Second,
			TTL:             time.Hour,
			IdleTTL:         10 * time.Minute,
			ExecTTL:         5 * time.Minute,
			MaxWorkerMemory: 256,
		},
	}
	if got := r.Jobs.Pool.Config; !samePool(got, wantPool) {
		t.Errorf("jobs.pool = %+v\nwant %+v", got, wantPool)
	}
	if rep, ok := r.PoolConfigFor("reports"); !ok || rep.NumWorkers != 1 || rep.Env["REPORTS_BUCKET"] != "reports-prod" ||
		rep.Scale != (pool.Scale{Max: 6, SpawnRate: 2, IdleTimeout: 2 * time.Minute, WaitThreshold: time.Second}) ||
		!slices.Equal(rep.Command, []string{"python3", "reports_worker.py"}) || rep.Supervisor.ExecTTL != 30*time.Minute {
		t.Errorf("jobs.pools.reports = %+v", rep)
	}
	if got := r.PoolNames(); !slices.Equal(got, []string{"default", "reports"}) {
		t.Errorf("PoolNames = %v", got)
	}
	if r.Jobs.Timeout != time.Minute || r.Jobs.ShutdownTimeout != 30*time.Second {
		t.Errorf("jobs.timeout %v, shutdown_timeout %v", r.Jobs.Timeout, r.Jobs.ShutdownTimeout)
	}
	if !slices.Equal(r.Jobs.Consume, []string{"orders", "emails"}) {
		t.Errorf("jobs.consume = %q", r.Jobs.Consume)
	}
	if got := r.Jobs.PipelineNames(); !slices.Equal(got, []string{"emails", "orders"}) {
		t.Errorf("PipelineNames = %q", got)
	}

	orders := r.Jobs.Pipelines["orders"]
	wantRetry := retry.Policy{MaxAttempts: 5, Backoff: retry.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.1}, Configured: true}
	if orders.Name != "orders" || orders.Driver != DriverMemory || orders.Concurrency != 4 || orders.Priority != 10 || orders.Retry != wantRetry {
		t.Errorf("orders = %+v", orders)
	}
	if orders.Memory == nil || orders.Memory.Prefetch != 100000 || orders.Memory.Priority != 10 {
		t.Errorf("orders memory config = %+v", orders.Memory)
	}
	emails := r.Jobs.Pipelines["emails"]
	if emails.Priority != 20 || emails.Memory == nil || emails.Memory.Priority != 20 || emails.Retry != retry.Defaults() || emails.Concurrency != 4 {
		t.Errorf("emails = %+v (memory %+v)", emails, emails.Memory)
	}

	if r.Status.Address != "127.0.0.1:2114" || r.Status.UnavailableStatusCode != 503 || r.Metrics.Address != "127.0.0.1:2112" {
		t.Errorf("status %q metrics %q", r.Status.Address, r.Metrics.Address)
	}
	if r.Logs.Level != "info" || r.Logs.Encoding != "json" {
		t.Errorf("logs = %+v", r.Logs)
	}
	if r.AMQP.Addr != amqpjobs.DefaultAddr || r.AMQP.TLS != nil || r.Kafka != nil || r.SQS != (sqsjobs.Global{}) {
		t.Errorf("driver sections should be absent")
	}
	if len(r.Warnings) != 0 {
		t.Errorf("warnings: %v", r.Warnings)
	}
}

func samePool(a, b pool.Config) bool {
	return slices.Equal(a.Command, b.Command) && a.NumWorkers == b.NumWorkers && a.MaxJobs == b.MaxJobs &&
		a.AllocateTimeout == b.AllocateTimeout && a.DestroyTimeout == b.DestroyTimeout &&
		a.ResetTimeout == b.ResetTimeout && a.Pipelining == b.Pipelining && a.Supervisor == b.Supervisor && len(a.Env) == len(b.Env)
}

func TestMinimalConfigGetsDefaults(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
server:
  command: php worker.php
jobs:
  consume: [default]
  pipelines:
    default:
      driver: memory
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if r.RPC.Listen != DefaultRPCListen || r.Server.Relay != "pipes" {
		t.Errorf("rpc.listen %q relay %q", r.RPC.Listen, r.Server.Relay)
	}
	p := r.Jobs.Pool
	if p.NumWorkers != runtime.NumCPU() || p.AllocateTimeout != DefaultPoolTimeout || p.DestroyTimeout != DefaultPoolTimeout ||
		p.ResetTimeout != DefaultPoolTimeout || p.Supervisor.WatchTick != DefaultWatchTick || p.MaxJobs != 0 || p.Supervisor.ExecTTL != 0 ||
		p.Pipelining != DefaultPipelining {
		t.Errorf("pool defaults: %+v", p)
	}
	if r.Jobs.ShutdownTimeout != DefaultShutdownTimeout || r.Jobs.Timeout != DefaultJobsTimeout {
		t.Errorf("jobs timeouts: %v %v", r.Jobs.ShutdownTimeout, r.Jobs.Timeout)
	}
	d := r.Jobs.Pipelines["default"]
	if d.Name != "default" || d.Concurrency != runtime.NumCPU() || d.Priority != DefaultPriority || d.Retry != retry.Defaults() || d.DeadLetter != "" {
		t.Errorf("pipeline defaults: %+v", d)
	}
	if d.Memory == nil || d.Memory.Prefetch != 100000 {
		t.Errorf("memory defaults: %+v", d.Memory)
	}
	if r.Logs.Level != "info" || r.Logs.Encoding != "console" || r.Logs.SlogLevel().String() != "INFO" {
		t.Errorf("logs defaults: %+v", r.Logs)
	}
	if r.Status.Address != "" || r.Metrics.Address != "" {
		t.Errorf("status/metrics must be off by default")
	}
}

func TestPoolConfigMergesServerSection(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
rpc: {listen: "unix:///run/pv.sock"}
server:
  command: ["php", "my worker.php"]
  env: {app_env: prod, Debug: "1"}
jobs:
  pool: {num_workers: 3}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	pc := r.PoolConfig()
	if !slices.Equal(pc.Command, []string{"php", "my worker.php"}) || pc.NumWorkers != 3 {
		t.Errorf("PoolConfig command %q workers %d", pc.Command, pc.NumWorkers)
	}
	want := map[string]string{"APP_ENV": "prod", "DEBUG": "1", "RR_RPC": "unix:///run/pv.sock"}
	if len(pc.Env) != len(want) {
		t.Errorf("env = %v, want %v", pc.Env, want)
	}
	for k, v := range want {
		if pc.Env[k] != v {
			t.Errorf("env[%s] = %q, want %q", k, pc.Env[k], v)
		}
	}
	pc.Command[0] = "changed"
	if r.Server.Command[0] != "php" {
		t.Errorf("PoolConfig shares memory with Root")
	}

	r, err = Parse([]byte("version: \"3\"\nserver: {command: php a.php}\njobs: {pool: {command: python3 -u b.py}}\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := r.PoolConfig().Command; !slices.Equal(got, []string{"python3", "-u", "b.py"}) {
		t.Errorf("jobs.pool.command should override server.command, got %q", got)
	}
}

func TestDurationForms(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
server: {command: w}
jobs:
  timeout: 15
  shutdown_timeout: "45"
  pool:
    allocate_timeout: 1m30s
    destroy_timeout: 0
    supervisor: {exec_ttl: 250ms, ttl: 2h, idle_ttl: 0}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := []time.Duration{r.Jobs.Timeout, r.Jobs.ShutdownTimeout, r.Jobs.Pool.AllocateTimeout, r.Jobs.Pool.DestroyTimeout,
		r.Jobs.Pool.Supervisor.ExecTTL, r.Jobs.Pool.Supervisor.TTL, r.Jobs.Pool.Supervisor.IdleTTL}
	want := []time.Duration{15 * time.Second, 45 * time.Second, 90 * time.Second, DefaultPoolTimeout,
		250 * time.Millisecond, 2 * time.Hour, 0}
	if !slices.Equal(got, want) {
		t.Errorf("durations = %v, want %v", got, want)
	}
}

func TestYAMLAnchorsAndMergeKeys(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
server: {command: w}
x-retry: &retry {max_attempts: 7, backoff: {initial: 2s, max: 10s, multiplier: 3, jitter: 0}}
jobs:
  pipelines:
    a: &base
      driver: memory
      retry: *retry
      config: {prefetch: 5}
    b:
      <<: *base
      concurrency: 1
`))
	// x-retry is not a known key: anchors must live inside known sections.
	if err == nil || !strings.Contains(err.Error(), "x-retry: unknown key") {
		t.Fatalf("want an unknown key error for x-retry, got %v (root %v)", err, r)
	}

	r, err = Parse([]byte(`
version: "3"
server: {command: w}
jobs:
  pipelines:
    a: &base
      driver: memory
      retry: {max_attempts: 7, backoff: {initial: 2s, max: 10s, multiplier: 3, jitter: 0}}
      config: {prefetch: 5}
    b:
      <<: *base
      concurrency: 1
      config: {prefetch: 6}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	b := r.Jobs.Pipelines["b"]
	if b.Driver != DriverMemory || b.Retry.MaxAttempts != 7 || b.Retry.Backoff.Multiplier != 3 || b.Concurrency != 1 || b.Memory.Prefetch != 6 {
		t.Errorf("merged pipeline b = %+v (memory %+v)", b, b.Memory)
	}
	if a := r.Jobs.Pipelines["a"]; a.Memory.Prefetch != 5 {
		t.Errorf("pipeline a changed by the merge: %+v", a.Memory)
	}
}

func TestWarnings(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
server: {command: w}
jobs:
  pool: {num_workers: 2}
  pipelines:
    big: {driver: memory, concurrency: 8}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(r.Warnings) != 1 || r.Warnings[0].Path != "jobs.pipelines.big.concurrency" || r.Warnings[0].Line != 7 {
		t.Fatalf("warnings = %v", r.Warnings)
	}
}

// TestPipelining covers jobs.pool.pipelining: absent or 0 means 1, 1 to
// MaxPipelining is taken as is, anything else is an error naming the key,
// reported with the other problems of the file.
func TestPipelining(t *testing.T) {
	for _, tc := range []struct {
		pool string // the jobs.pool mapping
		want int
		errs []string
	}{
		{pool: "{num_workers: 2}", want: 1},
		{pool: "{pipelining: 0}", want: 1},
		{pool: "{pipelining: null}", want: 1},
		{pool: "{pipelining: 1}", want: 1},
		{pool: "{pipelining: 8}", want: 8},
		{pool: "{pipelining: 64}", want: 64},
		{pool: "{pipelining: 65, num_workers: -1}", errs: []string{
			"jobs.pool.num_workers: must be from 0 to 500 (0 means one per CPU; got -1) (line 4)",
			"jobs.pool.pipelining: must be from 1 to 64, the most jobs written to one worker ahead of its replies (0 means 1; got 65) (line 4)",
		}},
		{pool: "{pipelining: -1}", errs: []string{
			"jobs.pool.pipelining: must be from 1 to 64, the most jobs written to one worker ahead of its replies (0 means 1; got -1) (line 4)",
		}},
		{pool: "{pipelining: 2.5}", errs: []string{
			`jobs.pool.pipelining: cannot unmarshal !!float "2.5" into int (line 4)`,
		}},
		{pool: "{pipelining: many}", errs: []string{
			`jobs.pool.pipelining: cannot unmarshal !!str "many" into int (line 4)`,
		}},
	} {
		r, err := Parse([]byte("version: \"3\"\nserver: {command: w}\njobs:\n  pool: " + tc.pool + "\n"))
		if got := errorStrings(err); !slices.Equal(got, tc.errs) {
			t.Errorf("%s: errors:\n%s\nwant:\n%s", tc.pool, strings.Join(got, "\n"), strings.Join(tc.errs, "\n"))
			continue
		}
		if err != nil {
			continue
		}
		if got := r.Jobs.Pool.Pipelining; got != tc.want {
			t.Errorf("%s: pipelining = %d, want %d", tc.pool, got, tc.want)
		}
		if got := r.PoolConfig().Pipelining; got != tc.want {
			t.Errorf("%s: PoolConfig().Pipelining = %d, want %d", tc.pool, got, tc.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	_, err := Parse(nil)
	got := errorStrings(err)
	want := []string{
		"server.command: required (or jobs.pool.command): the command that starts one worker",
		`version: required: write version: "3"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("errors = %q\nwant %q", got, want)
	}
}

// TestInvalidFixtures loads every testdata/invalid/*.yaml and compares the
// full list of reported errors with the .want file next to it (one
// Error() per line). Run with -update to rewrite the .want files, then
// review the diff.
func TestInvalidFixtures(t *testing.T) {
	for _, name := range []string{"PIPEVISOR_TEST_UNSET_DSN", "PIPEVISOR_TEST_UNSET_WORKERS", "PIPEVISOR_TEST_UNSET_DRIVER", "PIPEVISOR_TEST_UNSET_HOST"} {
		unsetEnv(t, name)
	}
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r, err := Load(file)
			if r != nil || err == nil {
				t.Fatalf("Load succeeded: %+v", r)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			got := errorStrings(err)
			if err.Error() != strings.Join(got, "\n") {
				t.Errorf("err.Error() is not the errors one per line:\n%s", err)
			}
			wantFile := strings.TrimSuffix(file, ".yaml") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			data, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			if !slices.Equal(got, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// errorStrings returns the Error() of every *Error inside err, in order.
func errorStrings(err error) []string {
	var out []string
	for _, e := range Errors(err) {
		out = append(out, e.Error())
	}
	return out
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	_, err := Parse([]byte(`version: "3"
rpc:
  listen: tcp://127.0.0.1:1
server:
  command: "php examples/worker.php"
jobs:
  pool:
    num_workers: two
    bogus_key: 1
  pipelines:
    default:
      driver: memory
      retry:
        max_attempts: -1
`))
	want := []string{
		`jobs.pool.num_workers: cannot unmarshal !!str "two" into int (line 8)`,
		`jobs.pool.bogus_key: unknown key (known keys: command, num_workers, max_jobs, allocate_timeout, destroy_timeout, reset_timeout, pipelining, supervisor, env, debug, max_queue_size, stream_timeout, dynamic_allocator, autoscale) (line 9)`,
		`jobs.pipelines.default.retry.max_attempts: must be >= 1 (1 means no retries; got -1) (line 14)`,
	}
	if got := errorStrings(err); !slices.Equal(got, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var e *Error
	if !errors.As(err, &e) || e.Path != "jobs.pool.num_workers" || e.Line != 8 || e.Reason != `cannot unmarshal !!str "two" into int` {
		t.Errorf("errors.As first error = %+v", e)
	}
}

func TestEnvKeysCollideOnceUpperCased(t *testing.T) {
	_, err := Parse([]byte("version: \"3\"\nserver:\n  command: w\n  env:\n    app: 1\n    APP: 2\n"))
	want := []string{"server.env.app: same variable as APP once upper-cased (line 5)"}
	if got := errorStrings(err); !slices.Equal(got, want) {
		t.Fatalf("errors = %q, want %q", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Path: "jobs.pool.num_workers", Line: 12, Reason: "bad"}, "jobs.pool.num_workers: bad (line 12)"},
		{Error{Path: "retry.max_attempts", Reason: "bad"}, "retry.max_attempts: bad"},
		{Error{Line: 3, Reason: "YAML syntax: x"}, "line 3: YAML syntax: x"},
		{Error{Reason: "driver kafka: not built into this binary"}, "driver kafka: not built into this binary"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// FuzzParse checks that any input either loads or fails with *Error values
// only, never panics, and that a loaded config has its defaults filled in.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/invalid/*.yaml")
	for _, file := range append(files, more...) {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("version: \"3\"\nserver: {command: w}\nx: &a [*a]\n"))
	f.Add([]byte("version: \"3\"\nserver: {command: w}\njobs: {pipelines: {a: {<<: [{driver: memory}]}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parse(data, func(string) (string, bool) { return "1", true })
		if (r == nil) == (err == nil) {
			t.Fatalf("root %v, err %v", r, err)
		}
		if err != nil {
			errs := Errors(err)
			if len(errs) == 0 || err.Error() != strings.Join(errorStrings(err), "\n") {
				t.Fatalf("error is not a join of *Error: %v", err)
			}
			return
		}
		if r.Jobs.Pool.NumWorkers < 1 || r.Jobs.Pool.Pipelining < 1 || r.Jobs.Pool.Pipelining > MaxPipelining || r.Version != "3" {
			t.Fatalf("loaded without defaults: %+v", r.Jobs.Pool)
		}
		for name, p := range r.Jobs.Pipelines {
			if p.Name != name || p.Concurrency < 1 || (p.Driver == DriverMemory) != (p.Memory != nil) {
				t.Fatalf("pipeline %q = %+v", name, p)
			}
		}
	})
}

func TestSelfReferencingAnchorsTerminate(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want string // "" = loads
	}{
		{"jobs: &a {\"\": *a}\n", "jobs.: unknown key (known keys: num_pollers, pipeline_size, options, timeout, shutdown_timeout, pool, pools, consume, pipelines) (line 3)"},
		{"jobs: &a {<<: *a}\n", ""},
		{"jobs: {pipelines: &a {x: {<<: *a}}}\n", "jobs.pipelines.x.driver: required (one of memory, boltdb, amqp, kafka, sqs) (line 3)\n" +
			"jobs.pipelines.x.x: unknown key (known keys: driver, config, priority, concurrency, retry, dead_letter, pool) (line 3)"},
		{"jobs: {pipelines: {x: &b {<<: [*b, *b], driver: memory}}}\n", ""},
	} {
		_, err := Parse([]byte("version: \"3\"\nserver: {command: w}\n" + tc.doc))
		if got := strings.Join(errorStrings(err), "\n"); got != tc.want {
			t.Errorf("%q: errors %q, want %q", tc.doc, got, tc.want)
		}
	}
}

// A key written next to a merge replaces the merged value whole: YAML's
// merge is shallow, so the nested mappings are not merged into each other.
func TestMergeIsShallow(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
server: {command: w}
jobs:
  pipelines:
    a: &base
      driver: memory
      priority: 3
      retry: {max_attempts: 7, backoff: {initial: 2s, max: 10s, multiplier: 3}}
    b:
      <<: *base
      retry: {backoff: {initial: 1s}}
    c:
      driver: memory
      retry: {backoff: {initial: 1s}}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	b, c := r.Jobs.Pipelines["b"], r.Jobs.Pipelines["c"]
	if b.Priority != 3 {
		t.Errorf("b.priority = %d, want 3 merged in", b.Priority)
	}
	if b.Retry != c.Retry {
		t.Errorf("b.retry = %+v, want %+v: the written retry replaces the merged one whole", b.Retry, c.Retry)
	}
}

func TestMergeListEarlierWins(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
server: {command: w}
jobs:
  pipelines:
    a: &a {driver: memory, concurrency: 1}
    b: &b {driver: memory, concurrency: 2, priority: 5}
    c: {<<: [*a, *b]}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c := r.Jobs.Pipelines["c"]; c.Concurrency != 1 || c.Priority != 5 {
		t.Errorf("c = %+v, want concurrency 1 (from a) and priority 5 (from b)", c)
	}
}
