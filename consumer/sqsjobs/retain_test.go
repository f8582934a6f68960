package sqsjobs

import (
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestDeadRetainFailedJobs: with retain_failed_jobs and no dead_letter,
// Dead leaves the message in the queue (no redrive policy here, so it
// comes back) instead of deleting it; it is received again as the next
// attempt, after error_visibility_timeout.
func TestDeadRetainFailedJobs(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.RetainFailedJobs = true
	cfg.ErrorVisibilityTimeout = time.Second
	d := open(t, cfg, "")
	publish(t, d, consumer.Job{ID: "kept", Name: "n"})
	first := receive(t, d, 10*time.Second)
	start := time.Now()
	settle(t, first, consumer.Outcome{Action: consumer.Dead, Reason: "bad"})
	again := receive(t, d, 10*time.Second)
	if again.ID != "kept" || again.Attempt != 2 {
		t.Fatalf("after Dead with retain_failed_jobs: %s attempt %d, want kept attempt 2", again.ID, again.Attempt)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("redelivered after %v, before error_visibility_timeout 1s", el)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
}

// TestClamp: out-of-range values RoadRunner clamps are clamped the same
// way, each with a warning naming its key.
func TestClamp(t *testing.T) {
	c := Config{Prefetch: 1_000_000, WaitTimeSeconds: 30 * time.Second, VisibilityTimeout: 50000 * time.Second,
		ErrorVisibilityTimeout: 50000 * time.Second, MaxMessagesInFlight: -1}
	w := c.Clamp()
	if c.Prefetch != MaxPrefetch || c.WaitTimeSeconds != MaxWaitTime || c.VisibilityTimeout != MaxVisibility ||
		c.ErrorVisibilityTimeout != MaxVisibility || c.MaxMessagesInFlight != 0 {
		t.Errorf("clamped %+v", c)
	}
	var keys []string
	for _, f := range w {
		keys = append(keys, f.Key)
	}
	want := []string{"prefetch", "wait_time_seconds", "visibility_timeout", "error_visibility_timeout", "max_messages_in_flight"}
	if len(keys) != len(want) {
		t.Fatalf("warnings %v, want %v", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Errorf("warnings %v, want %v", keys, want)
		}
	}
	ok := Config{Prefetch: 10}
	if w := ok.Clamp(); len(w) != 0 || ok.Prefetch != 10 {
		t.Errorf("in range: %v, prefetch %d", w, ok.Prefetch)
	}
}
