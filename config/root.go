// Package config loads a Pipevisor .rr.yaml into typed structs.
//
// Key names follow RoadRunner's where they mean the same thing, so an
// existing .rr.yaml for the jobs plugin keeps working; Pipevisor's own keys
// (jobs.shutdown_timeout, per-pipeline retry, dead_letter, concurrency) sit
// next to them. testdata/full.rr.yaml is an annotated example of every key.
//
// Loading is strict: unknown keys are rejected at every depth, values are
// type-checked and range-checked, cross-references (jobs.consume) are
// resolved, and every problem is reported at once as a *Error naming the
// YAML path, the line and the reason. ${VAR} and ${VAR:-default} in values
// expand from the environment first (see env.go for the exact rules).
//
// The package has no state: Load, Parse and PipelineFromDeclare are safe to
// call from any goroutine.
package config

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
	"github.com/pipevisor/pipevisor/pool"
)

// Defaults used when a key is absent.
const (
	// DefaultRPCListen is rpc.listen when absent (RoadRunner's default).
	DefaultRPCListen = "tcp://127.0.0.1:6001"
	// DefaultShutdownTimeout is jobs.shutdown_timeout when absent.
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultJobsTimeout is jobs.timeout when absent.
	DefaultJobsTimeout = 60 * time.Second
	// DefaultPoolTimeout is jobs.pool.{allocate,destroy,reset}_timeout when
	// absent or 0 (RoadRunner treats 0 as "default" too).
	DefaultPoolTimeout = 60 * time.Second
	// DefaultWatchTick is jobs.pool.supervisor.watch_tick when absent or 0.
	DefaultWatchTick = 5 * time.Second
	// DefaultPipelining is jobs.pool.pipelining when absent or 0: one job
	// at a time per worker.
	DefaultPipelining = 1
	// MaxPipelining is the largest jobs.pool.pipelining accepted.
	MaxPipelining = 64
	// MaxNumWorkers is the largest jobs.pool.num_workers accepted
	// (RoadRunner's pool refuses more than 500 workers too).
	MaxNumWorkers = 500
	// DefaultRPCMaxConnections is rpc.max_connections when absent or 0.
	DefaultRPCMaxConnections = 1024
	// DefaultRPCMaxInflightBytes is rpc.max_inflight_bytes when absent or
	// 0: 128 MiB, two requests of the largest size at once.
	DefaultRPCMaxInflightBytes int64 = 128 << 20
	// MinRPCMaxInflightBytes is the smallest rpc.max_inflight_bytes
	// accepted.
	MinRPCMaxInflightBytes int64 = 1 << 20
	// DefaultPriority is jobs.pipelines.<name>.priority when neither it
	// nor the driver config sets one.
	DefaultPriority int64 = 10
	// DefaultLogLevel and DefaultLogEncoding are the logs.* defaults.
	DefaultLogLevel    = "info"
	DefaultLogEncoding = "console"
)

// Root is a whole .rr.yaml, decoded, defaulted and validated.
//
// After a successful Load every default is filled in: Jobs.Pool.NumWorkers
// is at least 1, Jobs.Pool.Pipelining is from 1 to MaxPipelining, every
// pipeline's Concurrency is at least 1, timeouts are non-zero where a
// default exists.
type Root struct {
	// Version must be "3" (RoadRunner's config version).
	Version string `yaml:"version"`
	RPC     RPC    `yaml:"rpc"`
	Server  Server `yaml:"server"`
	Jobs    Jobs   `yaml:"jobs"`
	// Status serves /health and /ready; off when Address is empty.
	Status Status `yaml:"status"`
	// Metrics serves /metrics (Prometheus); off when Address is empty.
	Metrics Metrics `yaml:"metrics"`
	// Dashboard serves the web dashboard; off when Address is empty.
	Dashboard Dashboard `yaml:"dashboard"`
	Logs      Logs      `yaml:"logs"`
	// Endure is RoadRunner's plugin container section, accepted and
	// ignored with a warning (see ignoredWarnings).
	Endure *Endure `yaml:"endure"`
	// OTel is RoadRunner's OpenTelemetry section, accepted and ignored
	// with a warning: tracing is not implemented.
	OTel *OTel `yaml:"otel"`

	// AMQP is the amqp: section (addr, tls), defaults filled in.
	AMQP amqpjobs.Global `yaml:"amqp"`
	// Kafka is the kafka: section (brokers, tls, sasl, ping), defaults
	// filled in; nil when absent (required by kafka pipelines).
	Kafka *kafkajobs.Global `yaml:"kafka"`
	// BoltDB is the boltdb: section: permissions, the default mode of
	// the boltdb pipelines' files (file and interval, RoadRunner's kv
	// keys, are ignored with a warning); nil when absent.
	BoltDB *boltjobs.Global `yaml:"boltdb"`
	// SQS is the sqs: section (key, secret, region, session_token,
	// endpoint); every key is optional, empty means the AWS SDK's
	// defaults (credential chain, region).
	SQS sqsjobs.Global `yaml:"sqs"`

	// Warnings are settings that are valid but probably not what the
	// user wants, for `supervisor validate` to print (same format as
	// errors). A config with warnings loads fine.
	Warnings []*Error `yaml:"-"`
}

// RPC is the rpc: section.
type RPC struct {
	// Listen is tcp://host:port or unix:///path/to.sock
	// (default DefaultRPCListen).
	Listen string `yaml:"listen"`
	// MaxConnections is how many RPC connections are served at once
	// (default DefaultRPCMaxConnections); further clients wait, connected,
	// until a connection closes. Not a RoadRunner key.
	MaxConnections int `yaml:"max_connections"`
	// MaxInflightBytes bounds the request bytes the RPC server holds at
	// once across all connections, from a request frame's header to its
	// reply (default DefaultRPCMaxInflightBytes); a frame waits for room
	// before its body is read. No single request may be larger than this
	// or than the 64 MiB frame limit. Not a RoadRunner key.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
}

// Server is the server: section: how workers are started.
type Server struct {
	// Command starts one worker; a string is split on whitespace, a list
	// is taken as is. Required unless jobs.pool.command is set.
	Command []string `yaml:"command"`
	// Env is added to every worker's environment (keys are upper-cased
	// when handed to the pool; see Root.PoolConfig).
	Env map[string]string `yaml:"env"`
	// Relay must be "pipes" (the default); sockets are not supported.
	Relay string `yaml:"relay"`
	// RelayTimeout is RoadRunner's socket relay timeout: ignored with a
	// warning (workers talk over pipes).
	RelayTimeout time.Duration `yaml:"relay_timeout"`
	// User and Group are RoadRunner's worker user and group: ignored with
	// a warning (run the supervisor as the wanted user).
	User  string `yaml:"user"`
	Group string `yaml:"group"`
	// OnInit is a command run once before the workers start; nil when
	// absent. See pool.RunInit and Server.InitConfig.
	OnInit *OnInit `yaml:"on_init"`
}

// OnInit is server.on_init (RoadRunner's keys).
type OnInit struct {
	// Command is the program and its arguments (required); a string is
	// split on whitespace.
	Command []string `yaml:"command"`
	// ExecTimeout kills the command after this long (default
	// pool.DefaultInitTimeout, 60s).
	ExecTimeout time.Duration `yaml:"exec_timeout"`
	// Env is added to the supervisor's environment for the command (keys
	// upper-cased; values ${VAR}-expanded once more when it runs, as
	// RoadRunner does).
	Env map[string]string `yaml:"env"`
	// User is RoadRunner's user to run the command as: ignored with a
	// warning.
	User string `yaml:"user"`
	// ExitOnError makes a failing command stop startup (default false:
	// the failure is logged and the supervisor starts).
	ExitOnError bool `yaml:"exit_on_error"`
}

// InitConfig returns server.on_init for pool.RunInit, and false when the
// section is absent.
func (s Server) InitConfig() (pool.InitConfig, bool) {
	if s.OnInit == nil {
		return pool.InitConfig{}, false
	}
	return pool.InitConfig{
		Command:     slices.Clone(s.OnInit.Command),
		ExecTimeout: s.OnInit.ExecTimeout,
		Env:         maps.Clone(s.OnInit.Env),
		ExitOnError: s.OnInit.ExitOnError,
	}, true
}

// Jobs is the jobs: section.
type Jobs struct {
	// NumPollers is accepted for RoadRunner compatibility and ignored
	// with a warning: the pipelines fetch only as much as their
	// concurrency allows.
	NumPollers int `yaml:"num_pollers"`
	// PipelineSize is accepted for RoadRunner compatibility and ignored
	// with a warning: the memory driver's queue is unbounded (prefetch
	// caps in-flight).
	PipelineSize int `yaml:"pipeline_size"`
	// Options (options.parallelism) is accepted for RoadRunner
	// compatibility and ignored with a warning.
	Options JobsOptions `yaml:"options"`
	// Timeout bounds one jobs.* RPC operation (push, pause, resume,
	// declare, destroy); RoadRunner's key, default DefaultJobsTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// ShutdownTimeout is how long running jobs may finish after SIGTERM
	// before they are returned to the broker (default
	// DefaultShutdownTimeout; must be > 0).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Pool is the default worker pool (named DefaultPool wherever a name
	// is shown). Command and Env are as written under jobs.pool;
	// Root.PoolConfig merges in server.* and rpc.listen.
	Pool JobsPool `yaml:"pool"`
	// Pools are the named worker pools (RoadRunner's jobs.pools); a
	// pipeline runs on the one its pool key names. A pool named
	// DefaultPool here is the default pool when jobs.pool is not
	// written. See Root.PoolNames and Root.PoolConfigFor.
	Pools map[string]JobsPool `yaml:"pools"`
	// Consume names the pipelines started at boot; each must be declared
	// under Pipelines. Others start only through jobs.Resume.
	Consume []string `yaml:"consume"`
	// Pipelines by name; each Pipeline.Name equals its key.
	Pipelines map[string]Pipeline `yaml:"pipelines"`
}

// JobsPool is jobs.pool or one jobs.pools entry: the pool's keys, its
// scaling (dynamic_allocator, autoscale), plus RoadRunner's pool keys that
// have no meaning here, accepted and ignored with a warning.
type JobsPool struct {
	pool.Config `yaml:",inline"`
	// Env is added to server.env for this pool's workers (keys
	// upper-cased; this pool's value wins).
	Env map[string]string `yaml:"env"`
	// Debug (RoadRunner: a new worker per job) is ignored.
	Debug bool `yaml:"debug"`
	// MaxQueueSize (RoadRunner: requests waiting for a worker) is
	// ignored: a pipeline takes no job without a free slot.
	MaxQueueSize uint64 `yaml:"max_queue_size"`
	// StreamTimeout (RoadRunner: HTTP streaming) is ignored.
	StreamTimeout time.Duration `yaml:"stream_timeout"`
	// DynamicAllocator is RoadRunner's scaling: up to max_workers more
	// than num_workers under load. Load turns it into Config.Scale.
	DynamicAllocator *DynamicAllocator `yaml:"dynamic_allocator"`
	// Autoscale is Pipevisor's scaling, with the bounds written as
	// sizes; Load turns it into Config.Scale (and NumWorkers = Min).
	Autoscale *Autoscale `yaml:"autoscale"`

	// set is true when the section is written (decodeNode).
	set bool
}

// decodeNode decodes the pool's keys and records that it is written.
func (p *JobsPool) decodeNode(n *yaml.Node, path string) []*Error {
	p.set = true
	return decodeStruct(n, path, reflect.ValueOf(p).Elem())
}

// DynamicAllocator is RoadRunner's dynamic_allocator: the pool grows by
// up to SpawnRate workers per watch_tick while jobs wait for a worker, to
// at most num_workers + MaxWorkers, and retires the added workers idle
// for IdleTimeout. Defaults are RoadRunner's: 10, 5, 1m.
type DynamicAllocator struct {
	MaxWorkers  uint64        `yaml:"max_workers"`
	SpawnRate   uint64        `yaml:"spawn_rate"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// Autoscale is a pool's autoscale section: its size moves between Min
// and Max. SpawnRate (default 5) and IdleTimeout (default 1m) are as in
// DynamicAllocator; WaitThreshold, when set, grows the pool only when a
// job has waited that long for a worker (0: as soon as one waits).
type Autoscale struct {
	Min           int           `yaml:"min"`
	Max           int           `yaml:"max"`
	SpawnRate     int           `yaml:"spawn_rate"`
	IdleTimeout   time.Duration `yaml:"idle_timeout"`
	WaitThreshold time.Duration `yaml:"wait_threshold"`
}

// JobsOptions is jobs.options, accepted for RoadRunner compatibility.
type JobsOptions struct {
	// Parallelism is ignored with a warning.
	Parallelism int `yaml:"parallelism"`
}

// Status is the status: section (RoadRunner's keys).
type Status struct {
	// Address is host:port for /health and /ready; empty means off.
	Address string `yaml:"address"`
	// UnavailableStatusCode is the HTTP status of /health and /ready when
	// not healthy or not ready (default 503; 400..599).
	UnavailableStatusCode int `yaml:"unavailable_status_code"`
	// CheckTimeout is RoadRunner's wait for plugins' answers (seconds):
	// ignored with a warning (the checks here do not wait).
	CheckTimeout int `yaml:"check_timeout"`
}

// Metrics is the metrics: section.
type Metrics struct {
	// Address is host:port for /metrics; empty means off.
	Address string `yaml:"address"`
	// Collect is RoadRunner's application metrics, declared here and
	// set by workers over RPC: ignored with a warning.
	Collect map[string]Collector `yaml:"collect"`
}

// Collector is one metrics.collect entry (RoadRunner's keys).
type Collector struct {
	Type       string             `yaml:"type"`
	Namespace  string             `yaml:"namespace"`
	Subsystem  string             `yaml:"subsystem"`
	Help       string             `yaml:"help"`
	Labels     []string           `yaml:"labels"`
	Buckets    []float64          `yaml:"buckets"`
	Objectives map[string]float64 `yaml:"objectives"`
}

// Endure is RoadRunner's endure: section (its plugin container).
type Endure struct {
	GracePeriod time.Duration `yaml:"grace_period"`
	PrintGraph  bool          `yaml:"print_graph"`
	LogLevel    string        `yaml:"log_level"`
	WatchdogSec int           `yaml:"watchdog_sec"`
}

// PipelineNames returns the names of the declared pipelines, sorted.
func (j Jobs) PipelineNames() []string {
	names := make([]string, 0, len(j.Pipelines))
	for name := range j.Pipelines {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// PoolConfig returns the configuration of the default pool (see
// PoolConfigFor); with no default pool, that of jobs.pool as written.
func (r *Root) PoolConfig() pool.Config {
	return r.poolConfig(r.jobsPool(DefaultPool))
}

// poolConfig returns the pool configuration to run for jp: Command
// falling back to server.command, and Env holding server.env then jp.Env
// (keys upper-cased, as RoadRunner does) plus RR_RPC=rpc.listen. The pool
// adds RR_MODE and RR_RELAY itself. The returned config shares no memory
// with r.
func (r *Root) poolConfig(jp JobsPool) pool.Config {
	cfg := jp.Config
	cfg.Command = slices.Clone(cfg.Command)
	if len(cfg.Command) == 0 {
		cfg.Command = slices.Clone(r.Server.Command)
	}
	cfg.Env = make(map[string]string, len(r.Server.Env)+len(jp.Env)+1)
	for k, v := range r.Server.Env {
		cfg.Env[strings.ToUpper(k)] = v
	}
	for k, v := range jp.Env {
		cfg.Env[strings.ToUpper(k)] = v
	}
	cfg.Env["RR_RPC"] = r.RPC.Listen
	return cfg
}

// defaultRoot returns a Root holding every default that does not depend on
// other keys; applyDerivedDefaults fills in the rest after decoding.
func defaultRoot() *Root {
	return &Root{
		RPC:    RPC{Listen: DefaultRPCListen},
		Server: Server{Relay: "pipes"},
		Jobs: Jobs{
			Timeout:         DefaultJobsTimeout,
			ShutdownTimeout: DefaultShutdownTimeout,
		},
		Status: Status{UnavailableStatusCode: 503},
		Logs:   Logs{},
		AMQP:   amqpjobs.Global{Addr: amqpjobs.DefaultAddr},
	}
}

// applyDerivedDefaults fills defaults that RoadRunner also applies to an
// explicit 0, and those that depend on other keys.
func (r *Root) applyDerivedDefaults() {
	r.Logs.applyMode()
	if r.RPC.MaxConnections == 0 {
		r.RPC.MaxConnections = DefaultRPCMaxConnections
	}
	if r.RPC.MaxInflightBytes == 0 {
		r.RPC.MaxInflightBytes = DefaultRPCMaxInflightBytes
	}
	r.Jobs.Pool.applyDefaults()
	for name, jp := range r.Jobs.Pools {
		jp.applyDefaults()
		r.Jobs.Pools[name] = jp
	}
	if r.Jobs.Timeout == 0 {
		r.Jobs.Timeout = DefaultJobsTimeout
	}
	for name, pl := range r.Jobs.Pipelines {
		pl.Name = name
		if pl.Concurrency == 0 {
			pl.Concurrency = r.jobsPool(r.Jobs.PoolOf(pl)).DefaultConcurrency()
		}
		r.Jobs.Pipelines[name] = pl
	}
}
