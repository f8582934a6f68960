package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestKafkaFailedJobs: on Kafka the failed jobs are the records of the
// pipeline's dead-letter topic not retried or removed, listed with their
// reasons, retried (acked as attempt 1) and removed through the binary;
// what was retried or removed is recorded in the consumer group
// pipevisor-failed.<topic>, so a restarted supervisor does not offer it
// again.
func TestKafkaFailedJobs(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "failed:2", "failed.dead:2")
	log := filepath.Join(t.TempDir(), "jobs.log")
	cfg := e2eConfigPool(t, failingWorker, log, failedPool, "kafka:\n  brokers: [\""+strings.Join(brokers, `", "`)+"\"]\n",
		fmt.Sprintf(`      driver: kafka
      concurrency: 2
      dead_letter: failed.dead
%s      config:
        consumer_options: {topics: [failed]}
        group_options: {group_id: workers}
`, failedRetry))
	s := startConsuming(t, cfg)
	ids := killFour(t, s)
	failedLifecycle(t, s, log, ids)
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}

	// A new supervisor on the same topics offers nothing: the retries and
	// removals were recorded in the cluster.
	s2 := startConsuming(t, cfg)
	if rows := s2.failedList(); len(rows) != 0 {
		t.Errorf("after a restart jobs failed list = %+v, want nothing", rows)
	}
}
