package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
)

// rrCorpus is the test corpus of testdata/roadrunner: configs written the
// way RoadRunner's own jobs, memory, boltdb, amqp, kafka and sqs tests write them
// (every key and shape those use), plus every other key RoadRunner
// accepts in the sections Pipevisor runs (every-section.rr.yaml).
//
// For each file: the exact errors (none: it must load), the exact
// warnings, and what the decoded values must mean. A file not listed
// here (kafka-*.yaml, written for the kafka driver's own test) must load.
var rrCorpus = map[string]struct {
	errs     []string
	warnings []string
	check    func(t *testing.T, r *Root)
}{
	"memory.rr.yaml": {
		warnings: []string{
			"server.relay_timeout: ignored: workers talk over pipes, which have no relay timeout (line 12)",
			"jobs.num_pollers: ignored: each pipeline fetches only as many jobs as it has free slots (concurrency) (line 23)",
			"jobs.pipeline_size: ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch (line 24)",
			"jobs.pipelines.slow.config.pipeline_size: ignored: RoadRunner's jobs.pipeline_size, which no driver reads in a pipeline's config (line 42)",
		},
		check: func(t *testing.T, r *Root) {
			fast, slow := r.Jobs.Pipelines["fast"], r.Jobs.Pipelines["slow"]
			if fast.Memory == nil || fast.Priority != 1 || fast.Memory.Prefetch != 10000 || slow.Priority != 3 || slow.Memory.Prefetch != 100000 {
				t.Errorf("fast %+v slow %+v", fast.Memory, slow.Memory)
			}
			// development mode's debug level loses to the level written.
			if r.Logs.Level != "info" || r.Logs.Encoding != "console" || r.Jobs.Timeout != 30*time.Second {
				t.Errorf("logs %+v, jobs.timeout %v", r.Logs, r.Jobs.Timeout)
			}
		},
	},
	"memory-minimal.rr.yaml": {
		check: func(t *testing.T, r *Root) {
			// production mode: json; the level written wins over its info.
			if r.Logs.Encoding != "json" || r.Logs.Level != "debug" || r.Jobs.Pipelines["only"].Memory.Prefetch != 100000 {
				t.Errorf("logs %+v, memory %+v", r.Logs, r.Jobs.Pipelines["only"].Memory)
			}
		},
	},
	"kv-and-http.rr.yaml": {
		warnings: []string{
			"http: ignored: section of RoadRunner's http plugin, which Pipevisor does not run (line 15)",
			"kv: ignored: section of RoadRunner's kv plugin, which Pipevisor does not run (line 20)",
		},
		check: func(t *testing.T, r *Root) {
			if !slices.Equal(r.Jobs.Consume, []string{"mail"}) || r.Logs.Level != "debug" {
				t.Errorf("consume %q logs %+v", r.Jobs.Consume, r.Logs)
			}
		},
	},
	"kv-only.rr.yaml": {
		errs: []string{"server.command: required (or jobs.pool.command): the command that starts one worker"},
	},
	"pools.rr.yaml": {
		warnings: []string{
			"jobs.pipeline_size: ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch (line 17)",
		},
		check: func(t *testing.T, r *Root) {
			if got := r.PoolNames(); !slices.Equal(got, []string{"main", "urgent"}) {
				t.Errorf("PoolNames = %v, want [main urgent] (no default pool)", got)
			}
			first, second := r.Jobs.Pipelines["first"], r.Jobs.Pipelines["second"]
			if r.Jobs.PoolOf(first) != "main" || r.Jobs.PoolOf(second) != "urgent" || first.Concurrency != 4 || second.Concurrency != 2 {
				t.Errorf("first %s/%d, second %s/%d", first.Pool, first.Concurrency, second.Pool, second.Concurrency)
			}
			m, _ := r.PoolConfigFor("main")
			u, _ := r.PoolConfigFor("urgent")
			if m.NumWorkers != 4 || u.NumWorkers != 2 || u.AllocateTimeout != 30*time.Second ||
				!slices.Equal(m.Command, []string{"php", "jobs_worker.php"}) || m.Env["RR_RPC"] != "tcp://127.0.0.1:6105" {
				t.Errorf("main %+v, urgent %+v", m, u)
			}
		},
	},
	"boltdb-init.yaml": {
		check: func(t *testing.T, r *Root) {
			a, b := r.Jobs.Pipelines["first-db"], r.Jobs.Pipelines["second-db"]
			if a.BoltDB == nil || a.BoltDB.File != "rr1.db" || a.BoltDB.Prefetch != 100 || a.Priority != 1 || a.BoltDB.Priority != 1 ||
				b.BoltDB == nil || b.BoltDB.File != "rr2.db" || b.Priority != 2 {
				t.Errorf("first-db %+v, second-db %+v", a.BoltDB, b.BoltDB)
			}
			if a.BoltDB.Mode(r.BoltDB) != 0o755 || r.BoltDB != nil {
				t.Errorf("mode without a boltdb: section = %v, section %+v", a.BoltDB.Mode(r.BoltDB), r.BoltDB)
			}
		},
	},
	"boltdb-global.rr.yaml": {
		warnings: []string{
			"boltdb.file: ignored: the key of RoadRunner's boltdb kv storage, which Pipevisor does not run; a jobs pipeline names its file in its config.file (line 14)",
			"boltdb.interval: ignored: the key of RoadRunner's boltdb kv storage (TTL checks), which Pipevisor does not run (line 16)",
		},
		check: func(t *testing.T, r *Root) {
			plain, own := r.Jobs.Pipelines["plain"].BoltDB, r.Jobs.Pipelines["own-mode"].BoltDB
			if plain == nil || plain.File != boltjobs.DefaultFile || plain.Prefetch != boltjobs.DefaultPrefetch || plain.Priority != boltjobs.DefaultPriority {
				t.Errorf("plain = %+v", plain)
			}
			if m := plain.Mode(r.BoltDB); m != 0o666 {
				t.Errorf("plain's mode = %v, want the boltdb: section's 0666", m)
			}
			if own == nil || own.File != "data/own.db" || own.Mode(r.BoltDB) != 0o600 || own.Prefetch != boltjobs.DefaultPrefetch {
				t.Errorf("own-mode = %+v", own)
			}
		},
	},
	"boltdb-bad.rr.yaml": {
		errs: []string{
			"jobs.pipelines.broken.dead_letter: not supported by the boltdb driver: dead jobs stay in the pipeline's dead bucket in its file (line 15)",
			`jobs.pipelines.broken.config.permissions: "0999" is not a file mode: want octal digits from 0 to 0777, such as 0644 (line 17)`,
			"jobs.pipelines.broken.config.prefetch: must be positive, got -1 (line 18)",
		},
	},
	"other-drivers.rr.yaml": {
		errs: []string{
			"jobs.pipelines.tube.driver: RoadRunner's beanstalk driver is not shipped with Pipevisor (drivers: memory, boltdb, amqp, kafka, sqs) (line 60)",
			"jobs.pipelines.subject.driver: RoadRunner's nats driver is not shipped with Pipevisor (drivers: memory, boltdb, amqp, kafka, sqs) (line 91)",
		},
	},
	"amqp-v1.rr.yaml": {
		warnings: []string{
			"server.relay_timeout: ignored: workers talk over pipes, which have no relay timeout (line 11)",
			"jobs.num_pollers: ignored: each pipeline fetches only as many jobs as it has free slots (concurrency) (line 22)",
			"jobs.pipeline_size: ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch (line 23)",
			"jobs.pipelines.orders.config.prefetch: 1000000 is above the AMQP limit: using 65535 (line 35)",
			"jobs.pipelines.orders.config.requeue_on_fail: ignored: a failed job (error, crash, timeout) is retried by the pipeline's retry policy, then dead-lettered (line 49)",
		},
		check: func(t *testing.T, r *Root) {
			o := r.Jobs.Pipelines["orders"].AMQP
			if o == nil || o.Prefetch != amqpjobs.MaxPrefetch || o.Priority != 1 || o.RedialTimeout != 5*time.Second ||
				o.Queue != "orders-queue" || o.Exchange != "shop" || o.ExchangeType != amqpjobs.ExchangeTopic || o.Key() != "orders.*" ||
				!o.Durable || !o.ExchangeDurable || !o.DeleteQueueOnStop || !o.MultipleAck || o.ConsumerID != "orders-consumer" ||
				o.QueueHeaders["x-max-priority"] != 10 || !o.DeclaresExchange() || !o.DeclaresQueue() {
				t.Errorf("orders = %+v", o)
			}
			if dlx, ok := o.DeadLetterExchange(); !ok || dlx != "dead" {
				t.Errorf("x-dead-letter-exchange = %q, %v", dlx, ok)
			}
			b := r.Jobs.Pipelines["broadcast"].AMQP
			if b.ExchangeType != amqpjobs.ExchangeFanout || b.Key() != "" || b.Queue != "broadcast-queue" {
				t.Errorf("broadcast = %+v", b)
			}
			if m := r.Jobs.Pipelines["mails"].AMQP; m.Exchange != "default" || m.Key() != "mails" || m.Prefetch != 100 {
				t.Errorf("mails = %+v", m)
			}
		},
	},
	"amqp-v2.rr.yaml": {
		warnings: []string{
			"server.relay_timeout: ignored: workers talk over pipes, which have no relay timeout (line 11)",
			"jobs.num_pollers: ignored: each pipeline fetches only as many jobs as it has free slots (concurrency) (line 22)",
			"jobs.pipeline_size: ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch (line 23)",
		},
		check: func(t *testing.T, r *Root) {
			b := r.Jobs.Pipelines["billing"]
			c := b.AMQP
			if c == nil || c.Version != 2 || b.Priority != 1 || c.Prefetch != 100 || c.RedialTimeout != 10*time.Second ||
				c.Queue != "billing-queue" || c.Exchange != "billing-exchange" || c.ExchangeType != amqpjobs.ExchangeTopic ||
				c.Key() != "billing.#" || !c.Durable || !c.ExchangeDurable || c.ExchangeAutoDelete || c.QueueAutoDelete ||
				!c.DeleteQueueOnStop || !c.MultipleAck || c.RequeueOnFail || c.ConsumerID != "billing-consumer" ||
				c.QueueHeaders["x-queue-type"] != "quorum" || !c.DeclaresExchange() || !c.DeclaresQueue() {
				t.Errorf("billing = %+v", c)
			}
			p := r.Jobs.Pipelines["push-only"].AMQP
			if p.Consumes() || p.Key() != "push-only" || p.Exchange != "default" || p.Prefetch != amqpjobs.DefaultPrefetch || r.Jobs.Pipelines["push-only"].Priority != 2 {
				t.Errorf("push-only = %+v", p)
			}
			e := r.Jobs.Pipelines["existing"].AMQP
			if e.DeclaresExchange() || e.DeclaresQueue() || e.Queue != "readonly-queue" || e.Key() != "readonly-key" || e.Exchange != "readonly-exchange" {
				t.Errorf("existing = %+v (declares exchange %v, queue %v)", e, e.DeclaresExchange(), e.DeclaresQueue())
			}
		},
	},
	"amqp-tls-no-section.rr.yaml": {
		warnings: []string{
			"jobs.pipelines.secure.config.pipeline_size: ignored: RoadRunner's jobs.pipeline_size, which no driver reads in a pipeline's config (line 32)",
		},
		check: func(t *testing.T, r *Root) {
			if r.AMQP.TLS == nil || r.AMQP.TLS.RootCA != "certs/ca.pem" || r.AMQP.TLS.ClientAuthType != "require_and_verify_client_cert" {
				t.Errorf("amqp = %+v", r.AMQP)
			}
		},
	},
	"amqp-no-global.rr.yaml": {
		warnings: []string{
			"jobs.pipelines.local.driver: no amqp: section: amqp pipelines connect to amqp://guest:xxxxx@127.0.0.1:5672/ (line 20)",
		},
		check: func(t *testing.T, r *Root) {
			if r.AMQP.Addr != amqpjobs.DefaultAddr {
				t.Errorf("addr %q", r.AMQP.Addr)
			}
		},
	},
	"amqp-mixed.rr.yaml": {
		errs: []string{
			"jobs.pipelines.v2-with-flat-keys.config.routing_key: a version 1 key in a version 2 config: write it as queue.routing_key (the two formats do not mix) (line 25)",
			"jobs.pipelines.v2-with-flat-keys.config.exchange_type: a version 1 key in a version 2 config: write it as exchange.type (the two formats do not mix) (line 26)",
			"jobs.pipelines.v1-with-mappings.config.queue: a mapping here is RoadRunner's version 2 format: add version: 2 to this config (line 30)",
			"jobs.pipelines.v2-with-names.config.queue: with version: 2, queue is a mapping (name, routing_key, durable, auto_delete, exclusive, delete_on_stop, multiple_ack, requeue_on_fail, consumer_id, headers, declare); a plain name is the version 1 format (line 37)",
		},
	},
	"sqs.rr.yaml": {
		warnings: []string{
			"jobs.num_pollers: ignored: each pipeline fetches only as many jobs as it has free slots (concurrency) (line 26)",
			"jobs.pipeline_size: ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch (line 27)",
			"jobs.pipelines.standard.config.prefetch: 1000000 is above SQS's limit: using 10 (one ReceiveMessage returns at most 10) (line 38)",
			"jobs.pipelines.standard.config.wait_time_seconds: 30s is above SQS's limit: using 20s (line 42)",
		},
		check: func(t *testing.T, r *Root) {
			s := r.Jobs.Pipelines["standard"].SQS
			if s == nil || s.Prefetch != sqsjobs.MaxPrefetch || s.WaitTimeSeconds != sqsjobs.MaxWaitTime || s.VisibilityTimeout != 10*time.Second ||
				s.ErrorVisibilityTimeout != 5*time.Second || !s.RetainFailedJobs || s.Queue != "sqs-standard" ||
				s.Attributes["MessageRetentionPeriod"] != "345600" || s.Tags["test"] != "tag" {
				t.Errorf("standard = %+v", s)
			}
			o := r.Jobs.Pipelines["ordered"]
			if !o.SQS.FIFO() || o.SQS.MessageGroupID != "RR" || o.Concurrency != 10 || o.SQS.MaxMessagesInFlight != 10 {
				t.Errorf("ordered = %+v (concurrency %d)", o.SQS, o.Concurrency)
			}
			if d := r.Jobs.Pipelines["defaults"]; d.SQS.Queue != sqsjobs.DefaultQueue || d.Concurrency != r.Jobs.Pool.NumWorkers {
				t.Errorf("defaults = %+v (concurrency %d)", d.SQS, d.Concurrency)
			}
			if r.SQS.Key != "api-key" || r.SQS.Region != "us-west-1" || r.SQS.Endpoint != "http://127.0.0.1:9324" {
				t.Errorf("sqs = %+v", r.SQS)
			}
		},
	},
	"sqs-empty-section.rr.yaml": {
		check: func(t *testing.T, r *Root) {
			if r.SQS != (sqsjobs.Global{}) || r.Jobs.Pipelines["auto"].SQS.WaitTimeSeconds != 10*time.Second {
				t.Errorf("sqs = %+v, auto = %+v", r.SQS, r.Jobs.Pipelines["auto"].SQS)
			}
		},
	},
	"every-section.rr.yaml": {
		warnings: []string{
			"server.user: ignored: workers run as the supervisor's user (run the supervisor as the wanted user, e.g. systemd User=) (line 11)",
			"server.group: ignored: workers run as the supervisor's user (run the supervisor as the wanted user, e.g. systemd User=) (line 12)",
			`server.relay: "tcp://127.0.0.1:6131" ignored: workers talk over pipes (stdin/stdout; they get RR_RELAY=pipes) (line 15)`,
			"server.relay_timeout: ignored: workers talk over pipes, which have no relay timeout (line 16)",
			"server.on_init.user: ignored: the command runs as the supervisor's user (line 21)",
			"logs.level: panic is treated as error (line 27)",
			"logs.err_output: ignored: the logger has no separate error output (use logs.output) (line 29)",
			`logs.line_ending: ignored: every log line ends with \n (line 30)`,
			"logs.format: ignored: lines are written as logs.encoding says (console or json) (line 31)",
			"logs.time_format: ignored: lines are written as logs.encoding says (console or json) (line 32)",
			"logs.file_logger_options: ignored: log rotation is not implemented (write to a file with logs.output and rotate it with logrotate) (line 34)",
			"logs.channels: ignored: one logger serves the whole supervisor (per-plugin settings do not apply) (line 40)",
			"endure: ignored: RoadRunner's plugin container settings (the shutdown grace period is jobs.shutdown_timeout; the systemd watchdog follows WatchdogSec) (line 50)",
			"status.check_timeout: ignored: /health and /ready answer from the supervisor's own state without waiting (line 76)",
			"metrics.collect: ignored: application metrics declared here are not collected (line 80)",
			"jobs.num_pollers: ignored: each pipeline fetches only as many jobs as it has free slots (concurrency) (line 95)",
			"jobs.pipeline_size: ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch (line 96)",
			"jobs.options.parallelism: ignored: the pipelines of jobs.consume all start at boot (line 99)",
			"jobs.pool.max_queue_size: ignored: a pipeline takes no job from its broker without a free slot, so nothing queues for workers (line 104)",
			"jobs.pool.stream_timeout: ignored: jobs have no streamed responses (line 108)",
		},
		check: func(t *testing.T, r *Root) {
			ic, ok := r.Server.InitConfig()
			if !ok || !slices.Equal(ic.Command, []string{"php", "init.php"}) || ic.ExecTimeout != 20*time.Second || !ic.ExitOnError ||
				ic.Env["RR_RPC"] != "tcp://127.0.0.1:6130" {
				t.Errorf("on_init = %+v, %v", ic, ok)
			}
			if r.Server.Relay != "pipes" || r.Logs.Encoding != "json" || r.Logs.SlogLevel().String() != "ERROR" || !slices.Equal(r.Logs.Output, StringList{"stdout"}) {
				t.Errorf("relay %q, logs %+v", r.Server.Relay, r.Logs)
			}
			pc := r.PoolConfig()
			if !slices.Equal(pc.Command, []string{"php", "jobs_worker.php", "--pool"}) || pc.NumWorkers != 2 || pc.MaxJobs != 100 ||
				pc.Supervisor.ExecTTL != time.Minute || pc.Supervisor.MaxWorkerMemory != 128 || pc.Env["APP_ENV"] != "test" {
				t.Errorf("pool = %+v", pc)
			}
			if sc := r.PoolConfig().Scale; sc.Max != 22 || sc.SpawnRate != 5 || sc.IdleTimeout != 30*time.Second {
				t.Errorf("dynamic_allocator: scale = %+v, want max 2+20, spawn_rate 5, idle_timeout 30s", sc)
			}
			if r.Jobs.Pool.DynamicAllocator == nil || r.Jobs.Pool.DynamicAllocator.MaxWorkers != 20 || r.Metrics.Collect["app_metric"].Type != "histogram" ||
				r.OTel == nil || r.OTel.Resource.ServiceName != "rr_test" || r.Endure == nil || r.Endure.GracePeriod != 30*time.Second {
				t.Errorf("ignored sections not decoded: pool %+v metrics %+v otel %+v endure %+v", r.Jobs.Pool, r.Metrics, r.OTel, r.Endure)
			}
		},
	},
}

// rrExpectedToFail lists corpus files (kafka-*.yaml, owned by the kafka
// driver) that do not load yet, with the exact errors. Empty: all load.
var rrExpectedToFail = map[string][]string{}

// TestRoadRunnerCorpus loads every file of testdata/roadrunner and checks
// its errors, warnings and decoded values (see rrCorpus).
func TestRoadRunnerCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/roadrunner/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		name := filepath.Base(file)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			tc, listed := rrCorpus[name]
			wantErrs := tc.errs
			if failing, ok := rrExpectedToFail[name]; ok {
				wantErrs = failing
			}
			r, err := Load(file)
			if got := errorStrings(err); !slices.Equal(got, wantErrs) {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantErrs, "\n"))
			}
			if err != nil {
				return
			}
			if !listed {
				return // kafka-*.yaml: loading is what this test asks of them
			}
			var got []string
			for _, w := range r.Warnings {
				got = append(got, w.Error())
			}
			if !slices.Equal(got, tc.warnings) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.warnings, "\n"))
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	for name := range rrCorpus {
		if !seen[name] {
			t.Errorf("%s is listed but not in testdata/roadrunner", name)
		}
	}
}
