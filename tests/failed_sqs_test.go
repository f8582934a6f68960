package tests

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestSQSFailedJobs: on SQS the failed jobs are the messages of the
// pipeline's dead_letter queue, listed with their reasons without being
// deleted, retried (acked as attempt 1) and removed through the binary.
func TestSQSFailedJobs(t *testing.T) {
	requireTool(t, "php")
	endpoint := startSQS(t)
	q := sqsQueueName(t, "")
	dlq := sqsQueueName(t, "-dead")
	log := filepath.Join(t.TempDir(), "jobs.log")
	sections := "sqs:\n  key: test\n  secret: test\n  region: us-east-1\n  endpoint: " + endpoint + "\n"
	s := startConsuming(t, e2eConfigPool(t, failingWorker, log, failedPool, sections, fmt.Sprintf(`      driver: sqs
      concurrency: 2
      dead_letter: %s
%s      config:
        queue: %s
        prefetch: 4
        wait_time_seconds: 1
`, dlq, failedRetry, q)))
	ids := killFour(t, s)
	insp := newSQSInspector(t, endpoint)
	dlqURL := insp.url(dlq)
	if c := insp.counts(dlqURL); c.visible+c.notVisible != 4 {
		t.Fatalf("after listing, the dead_letter queue holds %s, want 4", c)
	}
	failedLifecycle(t, s, log, ids)
	if c := insp.counts(dlqURL); c != (sqsCounts{}) {
		t.Errorf("after remove --all the dead_letter queue holds %s", c)
	}
	stopSQSDrained(t, s, insp, insp.url(q))
}
