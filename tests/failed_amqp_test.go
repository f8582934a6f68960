package tests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
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

// TestAMQPFailedRetryPartlyRefused: a retry of 400 failed jobs of which
// the broker refuses all but 100 (the paused work queue is capped with
// reject-publish) retries exactly those 100: the other 300 stay failed,
// none is both failed and queued; once the cap is gone a second retry
// runs the rest, and every job ran exactly once more.
func TestAMQPFailedRetryPartlyRefused(t *testing.T) {
	vhost, addr := rabbitVhost(t)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, failedAMQPConfig(t, addr, "failed", "failed.dead", log))
	const total = 400
	jobs := make([]consumer.Job, total)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("fo-%03d", i), Name: "nack", Pipeline: "default", Payload: []byte("x")}
	}
	s.rpcPush(jobs, 100)
	s.waitFailed(total, 60*time.Second)

	if err := os.WriteFile(filepath.Join(filepath.Dir(log), "ok"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.mustCLI("jobs", "pause", "default")
	rabbitmqctl(t, "set_policy", "-p", vhost, "--apply-to", "queues", "cap", "^failed$", `{"max-length":100,"overflow":"reject-publish"}`)
	waitCapped(t, addr)
	out, code := s.cli("jobs", "failed", "retry", "--all")
	if code != 1 || !strings.Contains(out, "300 of 400 not confirmed") {
		t.Fatalf("retry against the capped queue: exit %d %q", code, out)
	}
	if n := queueReady(t, addr, "failed"); n != 100 {
		t.Fatalf("the work queue holds %d retried jobs, want 100", n)
	}
	left := s.failedList()
	if len(left) != total-100 {
		t.Fatalf("%d failed jobs left, want %d", len(left), total-100)
	}
	queued := map[string]bool{}
	for _, m := range getAllKeep(t, addr, "failed") {
		id, _ := m.Headers["rr_id"].(string)
		queued[id] = true
	}
	seen := map[string]bool{}
	for _, r := range left {
		if seen[r.ID] || queued[r.ID] {
			t.Fatalf("job %s listed twice or both failed and queued", r.ID)
		}
		seen[r.ID] = true
	}
	if len(queued)+len(seen) != total {
		t.Fatalf("%d queued + %d failed, want %d jobs", len(queued), len(seen), total)
	}

	rabbitmqctl(t, "clear_policy", "-p", vhost, "cap")
	s.mustCLI("jobs", "resume", "default")
	s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 100 })
	s.mustCLI("jobs", "failed", "retry", "--all")
	s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == total })
	acked := map[string]int{}
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); len(f) == 6 && f[4] == "ack" {
			acked[f[1]]++
		}
	}
	for _, j := range jobs {
		if acked[j.ID] != 1 {
			t.Errorf("job %s ran %d times after the retries, want once", j.ID, acked[j.ID])
		}
	}
	if rows := s.failedList(); len(rows) != 0 {
		t.Errorf("failed jobs left: %d", len(rows))
	}
}

// waitCapped waits until the cap policy applies to queue failed.
func waitCapped(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := withRabbit(addr, func(ch *amqp.Channel) error {
			if err := ch.Confirm(false); err != nil {
				return err
			}
			confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 101))
			// Fill to the cap with probes and see the next one refused.
			for range 101 {
				if err := ch.Publish("", "failed", false, false, amqp.Publishing{Body: []byte("probe")}); err != nil {
					return err
				}
			}
			nacked := false
			for range 101 {
				c := <-confirms
				nacked = nacked || !c.Ack
			}
			_, err := ch.QueuePurge("failed", false)
			if !nacked && err == nil {
				return errors.New("not capped yet")
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cap policy never applied: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// getAllKeep returns every message of queue without removing it
// (basic.get without ack; closing the channel puts them back).
func getAllKeep(t *testing.T, addr, queue string) (out []amqp.Delivery) {
	t.Helper()
	if err := withRabbit(addr, func(ch *amqp.Channel) error {
		for {
			m, ok, err := ch.Get(queue, false)
			if err != nil || !ok {
				return err
			}
			out = append(out, m)
		}
	}); err != nil {
		t.Fatalf("basic.get from %s: %v", queue, err)
	}
	return out
}
