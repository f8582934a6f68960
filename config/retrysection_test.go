package config

import (
	"testing"

	"github.com/pipevisor/pipevisor/retry"
)

// TestRetryConfigured: a pipeline's Retry.Configured says whether it has a
// retry: section, which decides who the policy governs (retry.Policy).
func TestRetryConfigured(t *testing.T) {
	r, err := Parse([]byte(`
version: "3"
server: {command: w}
jobs:
  pipelines:
    none:
      driver: memory
    null:
      driver: memory
      retry: ~
    empty:
      driver: memory
      retry: {}
    set: &base
      driver: memory
      retry: {max_attempts: 5}
    merged:
      <<: *base
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	defaults := retry.Defaults()
	withDefaults := defaults
	withDefaults.Configured = true
	five := withDefaults
	five.MaxAttempts = 5
	for name, want := range map[string]retry.Policy{
		"none": defaults, "null": defaults, "empty": withDefaults, "set": five, "merged": five,
	} {
		if got := r.Jobs.Pipelines[name].Retry; got != want {
			t.Errorf("pipeline %s: Retry = %+v, want %+v", name, got, want)
		}
	}

	for _, tc := range []struct {
		m    map[string]string
		want bool
	}{
		{map[string]string{"name": "a", "driver": "memory"}, false},
		{map[string]string{"name": "a", "driver": "memory", "retry": `{"max_attempts": 2}`}, true},
	} {
		p, err := PipelineFromDeclare(tc.m)
		if err != nil {
			t.Fatalf("PipelineFromDeclare(%v): %v", tc.m, err)
		}
		if p.Retry.Configured != tc.want {
			t.Errorf("PipelineFromDeclare(%v): Retry.Configured = %v, want %v", tc.m, p.Retry.Configured, tc.want)
		}
	}
}
