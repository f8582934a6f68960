package tests

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// failedAMQPConfig is a .rr.yaml with pipeline default on queue q of the
// broker at addr, dead-lettering to dlq, run by failingWorker.
func failedAMQPConfig(t *testing.T, addr, q, dlq, log string) string {
	t.Helper()
	return e2eConfigPool(t, failingWorker, log, failedPool, "amqp:\n  addr: "+addr+"\n", fmt.Sprintf(`      driver: amqp
      concurrency: 2
      dead_letter: %s
%s      config:
        queue: %s
        prefetch: 4
        redial_timeout: 5s
`, dlq, failedRetry, q))
}

// TestAMQPFailedJobs: on RabbitMQ the failed jobs are the messages of the
// pipeline's dead_letter queue, listed with their reasons without being
// taken out of it, retried (acked as attempt 1) and removed through the
// binary.
func TestAMQPFailedJobs(t *testing.T) {
	addr := amqpBaseURL()
	needRabbit(t, addr)
	q := rabbitQueue(t, addr, []string{".dead"}, 100*time.Millisecond, 200*time.Millisecond)
	dlq := q + ".dead"
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, failedAMQPConfig(t, addr, q, dlq, log))
	ids := killFour(t, s)
	if n := queueReady(t, addr, dlq); n != 4 {
		t.Fatalf("after listing, the dead_letter queue holds %d messages, want 4", n)
	}
	failedLifecycle(t, s, log, ids)
	if n := queueReady(t, addr, dlq); n != 0 {
		t.Errorf("after remove --all the dead_letter queue holds %d messages", n)
	}
	stopDrained(t, s, addr, q)
}
