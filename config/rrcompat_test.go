package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// parseWith parses a minimal config with extra YAML appended.
func parseWith(t *testing.T, extra string) (*Root, error) {
	t.Helper()
	return Parse([]byte("version: \"3\"\nserver: {command: w}\n" + extra))
}

// warningStrings returns r's warnings as strings.
func warningStrings(r *Root) []string {
	var out []string
	for _, w := range r.Warnings {
		out = append(out, w.Error())
	}
	return out
}

// TestLogsMode: logs.mode sets level and encoding defaults as RoadRunner's
// modes do; what is written wins; off logs nothing.
func TestLogsMode(t *testing.T) {
	for _, tc := range []struct {
		logs, level, encoding string
	}{
		{"{}", "info", "console"},
		{"{mode: development}", "debug", "console"},
		{"{mode: Production}", "info", "json"},
		{"{mode: raw}", "info", "console"},
		{"{mode: production, encoding: console, level: warn}", "warn", "console"},
		{"{mode: off}", LevelOff, "console"},
		{"{mode: none, level: debug}", LevelOff, "console"},
		{"{level: WARNING}", "warn", "console"},
		{"{level: Debug}", "debug", "console"},
	} {
		r, err := parseWith(t, "logs: "+tc.logs+"\n")
		if err != nil {
			t.Fatalf("%s: %v", tc.logs, err)
		}
		if r.Logs.Level != tc.level || r.Logs.Encoding != tc.encoding {
			t.Errorf("%s: level %q encoding %q, want %q %q", tc.logs, r.Logs.Level, r.Logs.Encoding, tc.level, tc.encoding)
		}
	}
	_, err := parseWith(t, "logs: {mode: verbose}\n")
	if got := errorStrings(err); !slices.Equal(got, []string{`logs.mode: must be development, production, raw, off or none (got "verbose") (line 3)`}) {
		t.Errorf("bad mode: %q", got)
	}
}

// TestLogsNewLogger: off discards everything; output sends lines to
// stdout, stderr and files (appended), encoding json writes JSON.
func TestLogsNewLogger(t *testing.T) {
	var stdout, stderr bytes.Buffer
	off := Logs{Mode: "off"}
	off.applyMode()
	log, c, err := off.NewLogger(&stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Error("hidden")
	_ = c.Close()
	if stdout.Len()+stderr.Len() != 0 {
		t.Fatalf("mode off wrote %q %q", stdout.String(), stderr.String())
	}

	file := filepath.Join(t.TempDir(), "rr.log")
	if err := os.WriteFile(file, []byte("before\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := Logs{Mode: "production", Output: StringList{"stdout", file}}
	l.applyMode()
	log, c, err = l.NewLogger(&stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("not at info")
	log.Info("hello", "took", 1500*time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(data), "before\n{") || !strings.Contains(string(data), `"msg":"hello"`) || strings.Contains(string(data), "not at info") {
		t.Errorf("file holds %q", data)
	}
	if !strings.Contains(stdout.String(), `"msg":"hello","took":"1.5s"`) || stderr.Len() != 0 {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}

	def := Logs{}
	def.applyMode()
	w, _, err := def.Writer(&stdout, &stderr)
	if err != nil || w != &stderr {
		t.Errorf("no output: writer %v, %v; want stderr", w, err)
	}
	bad := Logs{Output: StringList{filepath.Join(t.TempDir(), "missing", "rr.log")}}
	if _, _, err := bad.Writer(&stdout, &stderr); err == nil || !strings.Contains(err.Error(), "logs.output") {
		t.Errorf("unopenable file: %v", err)
	}
	if (Logs{Level: LevelOff}).SlogLevel() <= slog.LevelError {
		t.Error("LevelOff lets errors through")
	}
}

// TestLogsOutputString: logs.output takes one string or a list.
func TestLogsOutputString(t *testing.T) {
	r, err := parseWith(t, "logs: {output: stdout}\n")
	if err != nil || !slices.Equal(r.Logs.Output, StringList{"stdout"}) {
		t.Fatalf("string: %v %v", r, err)
	}
	r, err = parseWith(t, "logs: {output: [stderr, /tmp/x.log]}\n")
	if err != nil || !slices.Equal(r.Logs.Output, StringList{"stderr", "/tmp/x.log"}) {
		t.Fatalf("list: %v %v", r, err)
	}
	_, err = parseWith(t, "logs: {output: {a: b}}\n")
	if got := errorStrings(err); len(got) != 1 || !strings.HasPrefix(got[0], "logs.output: expected a list") {
		t.Errorf("mapping: %q", got)
	}
}

// TestOnInit: server.on_init decodes into pool.InitConfig; its command is
// required.
func TestOnInit(t *testing.T) {
	r, err := Parse([]byte("version: \"3\"\nserver:\n  command: w\n  on_init:\n    command: [sh, -c, 'echo hi']\n    env: {foo: bar}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ic, ok := r.Server.InitConfig()
	if !ok || !slices.Equal(ic.Command, []string{"sh", "-c", "echo hi"}) || ic.ExecTimeout != 0 || ic.ExitOnError || ic.Env["foo"] != "bar" {
		t.Errorf("on_init = %+v, %v", ic, ok)
	}
	if _, ok := (Server{}).InitConfig(); ok {
		t.Error("no on_init reported as present")
	}
	_, err = Parse([]byte("version: \"3\"\nserver:\n  command: w\n  on_init:\n    exit_on_error: true\n"))
	if got := errorStrings(err); !slices.Equal(got, []string{"server.on_init.command: required: the command to run before the workers start (line 4)"}) {
		t.Errorf("no command: %q", got)
	}
}

// TestForeignSections: sections of RoadRunner plugins not run here are
// warnings; an unknown top-level key is still an error.
func TestForeignSections(t *testing.T) {
	r, err := parseWith(t, "grpc: {listen: x}\ntemporal: {address: y}\ncentrifuge: {}\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"grpc: ignored: section of RoadRunner's grpc plugin, which Pipevisor does not run (line 3)",
		"temporal: ignored: section of RoadRunner's temporal plugin, which Pipevisor does not run (line 4)",
		"centrifuge: ignored: section of RoadRunner's centrifuge plugin, which Pipevisor does not run (line 5)",
	}
	if got := warningStrings(r); !slices.Equal(got, want) {
		t.Errorf("warnings %q", got)
	}
	// Not expanded either: an unset ${VAR} in them is no error.
	r, err = parseWith(t, "http:\n  address: ${PV_TEST_SURELY_UNSET_ADDR}\n")
	if err != nil || len(r.Warnings) != 1 {
		t.Fatalf("unset variable in an ignored section: %v", err)
	}
	_, err = parseWith(t, "endur: {}\n")
	if got := errorStrings(err); len(got) != 1 || !strings.Contains(got[0], "endur: unknown key (did you mean endure?)") {
		t.Errorf("typo: %q", got)
	}
	_, err = parseWith(t, "otel: {exporterr: otlp}\n")
	if got := errorStrings(err); len(got) != 1 || !strings.Contains(got[0], "otel.exporterr: unknown key (did you mean exporter?)") {
		t.Errorf("typo inside an ignored section: %q", got)
	}
}

// TestAMQPVersion2Errors: errors of a version 2 config name its own keys,
// with did-you-mean inside the mappings.
func TestAMQPVersion2Errors(t *testing.T) {
	_, err := parseWith(t, `jobs:
  pipelines:
    a:
      driver: amqp
      config:
        version: 2
        exchange: {name: ex, type: nope}
        queue: {nme: q, routing_key: ""}
    b:
      driver: amqp
      config: {version: 3}
`)
	want := []string{
		`jobs.pipelines.a.config.exchange.type: must be direct, fanout, topic or headers; got "nope" (line 9)`,
		"jobs.pipelines.a.config.queue.nme: unknown key (did you mean name?) (line 10)",
		"jobs.pipelines.a.config.queue.routing_key: required unless exchange_type is fanout (or set queue, which it defaults to) (line 10)",
		"jobs.pipelines.b.config.version: must be 1 (flat keys) or 2 (exchange: and queue: mappings), got 3 (line 13)",
	}
	if got := errorStrings(err); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSQSCompatWarnings: max_messages_in_flight next to a written
// concurrency, and retain_failed_jobs next to dead_letter, are warnings.
func TestSQSCompatWarnings(t *testing.T) {
	r, err := parseWith(t, `jobs:
  pool: {num_workers: 8}
  pipelines:
    q:
      driver: sqs
      concurrency: 3
      dead_letter: q-dead
      config: {max_messages_in_flight: 5, retain_failed_jobs: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"jobs.pipelines.q.config.max_messages_in_flight: ignored: the pipeline's concurrency (3) caps the jobs in flight (line 10)",
		`jobs.pipelines.q.config.retain_failed_jobs: ignored: dead jobs go to dead_letter "q-dead" (line 10)`,
	}
	if got := warningStrings(r); !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r.Jobs.Pipelines["q"].Concurrency != 3 {
		t.Errorf("concurrency %d", r.Jobs.Pipelines["q"].Concurrency)
	}
}

// TestDeclareAMQPDeclareKeys: RoadRunner's Declare keys exchange_declare
// and queue_declare reach the driver config.
func TestDeclareAMQPDeclareKeys(t *testing.T) {
	p, err := PipelineFromDeclare(map[string]string{"name": "a", "driver": "amqp", "queue": "q", "exchange_declare": "false", "queue_declare": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if p.AMQP.DeclaresExchange() || !p.AMQP.DeclaresQueue() {
		t.Errorf("declares exchange %v queue %v", p.AMQP.DeclaresExchange(), p.AMQP.DeclaresQueue())
	}
}

// TestZeroMeansDefault: in memory, amqp and sqs configs an explicit 0 is
// the default, as RoadRunner reads it; negative seconds and an amqp
// priority below 1 are clamped with a warning.
func TestZeroMeansDefault(t *testing.T) {
	r, err := parseWith(t, `amqp: {addr: "amqp://guest:guest@127.0.0.1:5672/"}
jobs:
  pipelines:
    m:
      driver: memory
      config: {priority: 0, prefetch: 0}
    a:
      driver: amqp
      config: {queue: q, prefetch: 0, priority: 0, redial_timeout: 0}
    a2:
      driver: amqp
      config: {version: 2, prefetch: 0, redial_timeout: -5, priority: -2, queue: {name: q}}
    s:
      driver: sqs
      config: {prefetch: 0, priority: 0, wait_time_seconds: -1, visibility_timeout: -3, error_visibility_timeout: 0}
`)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Jobs.Pipelines
	if m := p["m"].Memory; m.Priority != 10 || m.Prefetch != 100000 || p["m"].Priority != 10 {
		t.Errorf("memory = %+v", m)
	}
	for _, name := range []string{"a", "a2"} {
		if a := p[name].AMQP; a.Prefetch != 10 || a.Priority != 10 || a.RedialTimeout != time.Minute || p[name].Priority != 10 {
			t.Errorf("%s = %+v", name, a)
		}
	}
	if s := p["s"].SQS; s.Prefetch != 1 || s.Priority != 10 || s.WaitTimeSeconds != 20*time.Second || s.VisibilityTimeout != 0 {
		t.Errorf("sqs = %+v", s)
	}
	want := []string{
		"jobs.pipelines.a2.config.priority: -2 is below 1: using the default 10 (line 14)",
		"jobs.pipelines.a2.config.redial_timeout: -5 is below 0: using 0 (the default) (line 14)",
		"jobs.pipelines.s.config.visibility_timeout: -3 is below 0: using 0 (the default) (line 17)",
		"jobs.pipelines.s.config.wait_time_seconds: -1 is below 0: using 0 (the default) (line 17)",
	}
	if got := warningStrings(r); !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
