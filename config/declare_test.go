package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/retry"
)

func TestPipelineFromDeclare(t *testing.T) {
	// What RoadRunner's PHP MemoryCreateInfo sends.
	p, err := PipelineFromDeclare(map[string]string{"name": "local", "driver": "memory", "priority": "3", "prefetch": "100"})
	if err != nil {
		t.Fatalf("PipelineFromDeclare: %v", err)
	}
	if p.Name != "local" || p.Driver != DriverMemory || p.Priority != 3 || p.Concurrency != 0 || p.Retry != retry.Defaults() {
		t.Errorf("pipeline = %+v", p)
	}
	if p.Memory == nil || p.Memory.Priority != 3 || p.Memory.Prefetch != 100 {
		t.Errorf("memory = %+v", p.Memory)
	}

	// Our extra keys, and an empty value meaning "default".
	p, err = PipelineFromDeclare(map[string]string{
		"name":        "orders",
		"driver":      "memory",
		"prefetch":    "",
		"concurrency": "4",
		"retry":       `{"max_attempts": 6, "backoff": {"initial": "250ms", "max": 5, "jitter": 0}}`,
	})
	if err != nil {
		t.Fatalf("PipelineFromDeclare: %v", err)
	}
	wantRetry := retry.Policy{MaxAttempts: 6, Backoff: retry.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0}, Configured: true}
	if p.Concurrency != 4 || p.Retry != wantRetry || p.Priority != DefaultPriority || p.Memory.Prefetch != 100000 {
		t.Errorf("pipeline = %+v (memory %+v)", p, p.Memory)
	}
}

func TestPipelineFromDeclareErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    map[string]string
		want []string
	}{
		{
			name: "missing name and driver",
			m:    map[string]string{"prefetch": "1"},
			want: []string{"driver: required (one of memory, boltdb, amqp, kafka, sqs)", "name: required"},
		},
		{
			name: "all problems at once",
			m: map[string]string{
				"name": "q", "driver": "memory", "prefetch": "lots", "queue": "x", "priority": "0",
				"concurrency": "0", "retry": `{"max_attempts": 0, "backoff": {"jitter": 3}, "tries": 1}`,
			},
			want: []string{
				"concurrency: must be >= 1 (got 0)",
				"prefetch: cannot unmarshal !!str \"lots\" into int",
				"priority: must be >= 1 (got 0)",
				"queue: unknown key (known keys: priority, prefetch)",
				"retry.backoff.jitter: must be between 0 and 1, got 3",
				"retry.max_attempts: must be >= 1 (1 means no retries; got 0)",
				"retry.tries: unknown key (known keys: max_attempts, backoff)",
			},
		},
		{
			name: "bad JSON",
			m:    map[string]string{"name": "q", "driver": "memory", "retry": `{"max_attempts": `},
			want: []string{"retry: not valid JSON: line 1: did not find expected node content"},
		},
		{
			name: "nested value where a number belongs",
			m:    map[string]string{"name": "q", "driver": "memory", "prefetch": `{"a": 1}`},
			want: []string{"prefetch: expected an int, got a mapping"},
		},
		{
			name: "unknown key of a driver",
			m:    map[string]string{"name": "q", "driver": "memory", "prefetsh": "1"},
			want: []string{"prefetsh: unknown key (did you mean prefetch?)"},
		},
		{
			name: "bad JSON inside a driver key",
			m:    map[string]string{"name": "q", "driver": "amqp", "queue": "q", "queue_headers": `{"x-max-priority": 10`},
			want: []string{"queue_headers: not valid JSON: line 1: did not find expected ',' or '}'"},
		},
		{
			name: "unknown driver and bad name",
			m:    map[string]string{"name": "a b", "driver": "redis"},
			want: []string{"driver: unknown driver \"redis\" (want one of memory, boltdb, amqp, kafka, sqs)", "name: a pipeline name must not contain spaces or control characters"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PipelineFromDeclare(tc.m)
			if err == nil {
				t.Fatalf("no error; pipeline %+v", p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if got := errorStrings(err); !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestDeclareValidatesLikeAFile checks that one bad value gets the same
// reason through Declare and through a file.
func TestDeclareValidatesLikeAFile(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		yaml       string // the pipeline's lines in a file
		filePath   string
	}{
		{"prefetch", "-4", "driver: memory\n      config: {prefetch: -4}", "jobs.pipelines.q.config.prefetch"},
		{"priority", "-1", "driver: memory\n      priority: -1", "jobs.pipelines.q.priority"},
		{"concurrency", "x", "driver: memory\n      concurrency: x", "jobs.pipelines.q.concurrency"},
		{"retry", `{"backoff": {"initial": "2s", "max": "1s"}}`, "driver: memory\n      retry: {backoff: {initial: 2s, max: 1s}}", "jobs.pipelines.q.retry.backoff.max"},
	} {
		_, declErr := PipelineFromDeclare(map[string]string{"name": "q", "driver": "memory", tc.key: tc.value})
		_, fileErr := Parse([]byte("version: \"3\"\nserver: {command: w}\njobs:\n  pipelines:\n    q:\n      " + tc.yaml + "\n"))
		d, f := Errors(declErr), Errors(fileErr)
		if len(d) != 1 || len(f) != 1 || d[0].Reason != f[0].Reason || "jobs.pipelines.q."+d[0].Path != strings.Replace(f[0].Path, ".config.", ".", 1) || f[0].Path != tc.filePath {
			t.Errorf("%s=%s: declare %q, file %q", tc.key, tc.value, errorStrings(declErr), errorStrings(fileErr))
		}
	}
}

func TestDeclareRejectsAnchors(t *testing.T) {
	_, err := PipelineFromDeclare(map[string]string{"name": "q", "driver": "memory", "retry": `{a: &x [1, 2], max_attempts: *x}`})
	want := []string{"retry: YAML anchors and aliases are not allowed here"}
	if got := errorStrings(err); !slices.Equal(got, want) {
		t.Fatalf("errors = %q, want %q", got, want)
	}
}

func TestPipelineFromDeclareSQSWaitTimeAlias(t *testing.T) {
	p, err := PipelineFromDeclare(map[string]string{"name": "q", "driver": "sqs", "queue": "jobs", "wait_time": "5"})
	if err != nil {
		t.Fatal(err)
	}
	if p.SQS == nil || p.SQS.WaitTimeSeconds != 5*time.Second {
		t.Fatalf("wait_time (RoadRunner's Declare key) not taken as wait_time_seconds: %+v", p.SQS)
	}
}

// TestConsumeMayNameAPipelineDeclaredLater: as in RoadRunner, jobs.consume
// may list a pipeline that only a jobs.Declare creates; it is a warning,
// not an error.
func TestConsumeMayNameAPipelineDeclaredLater(t *testing.T) {
	r, err := Parse([]byte("version: \"3\"\nserver: {command: w}\njobs:\n  consume: [q, later]\n  pipelines:\n    q: {driver: memory}\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var found bool
	for _, w := range r.Warnings {
		if w.Path == "jobs.consume[1]" && strings.Contains(w.Reason, "jobs.Declare") {
			found = true
		}
	}
	if !found || !slices.Equal(r.Jobs.Consume, []string{"q", "later"}) {
		t.Errorf("warnings %v, consume %v", r.Warnings, r.Jobs.Consume)
	}
}
