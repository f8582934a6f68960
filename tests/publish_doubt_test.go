package tests

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// pushSummaryRE matches the summary line of a push that did not confirm
// every job.
var pushSummaryRE = regexp.MustCompile(`push of (\d+) jobs to default: (\d+) confirmed, (\d+) failed, (\d+) in doubt`)

// TestPushConnectionCutReportsInDoubt: `supervisor push --count 50000
// --batch 20` to a RabbitMQ pipeline nobody consumes, while the broker
// closes the supervisor's connections. The command exits non-zero and
// prints how many jobs were confirmed, failed and in doubt; the queue then
// holds at least the confirmed ones and at most the confirmed and in-doubt
// ones together (a failed job is never in it).
func TestPushConnectionCutReportsInDoubt(t *testing.T) {
	vhost, addr := rabbitVhost(t)
	requireTool(t, "php")
	cfg := writeConfig(t, fmt.Sprintf(`version: "3"
rpc:
  listen: tcp://%s
server:
  command: %q
  env:
    E2E_LOG: %q
amqp:
  addr: %s
jobs:
  pool:
    num_workers: 1
  consume: []
  pipelines:
    default:
      driver: amqp
      config:
        queue: doubt
        redial_timeout: 5s
`, freeAddr(t), behaveWorker, filepath.Join(t.TempDir(), "jobs.log"), addr))
	s := startSupervisor(t, cfg)
	waitFor(t, 30*time.Second, "pipeline default to exist", func() bool {
		out, code := s.cli("jobs", "list")
		return code == 0 && strings.Contains(out, "default")
	})

	const count = 50000
	for attempt := 1; ; attempt++ {
		purge(t, addr, "doubt")
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		cmd := exec.CommandContext(ctx, testEnv.bin, "push", "--pipeline", "default", "--job", "ack",
			"--payload", strings.Repeat("p", 200), "--count", strconv.Itoa(count), "--batch", "20", "-c", cfg)
		cmd.Dir = testEnv.repoRoot
		type result struct {
			out  string
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code, err = ee.ExitCode(), nil
			}
			done <- result{string(out), code, err}
		}()
		// Cut once a few thousand jobs are in: the push is mid-flight.
		waitFor(t, 60*time.Second, "the push to get going", func() bool { return queueReady(t, addr, "doubt") >= 2000 })
		rabbitmqctl(t, "close_all_connections", "--vhost", vhost, "e2e publish doubt test")
		r := <-done
		cancel()
		if r.err != nil {
			t.Fatalf("push: %v", r.err)
		}
		if r.code == 0 {
			// The cut fell between two batches; every job was confirmed.
			if !strings.Contains(r.out, fmt.Sprintf("pushed %d jobs to default: %d confirmed", count, count)) {
				t.Fatalf("push exited 0 with %q", r.out)
			}
			if attempt == 4 {
				t.Fatalf("4 connection cuts never caught a batch in flight")
			}
			continue
		}
		m := pushSummaryRE.FindStringSubmatch(r.out)
		if m == nil {
			t.Fatalf("push exit %d without a confirmed/failed/in doubt summary:\n%s", r.code, r.out)
		}
		total, _ := strconv.Atoi(m[1])
		confirmed, _ := strconv.Atoi(m[2])
		failed, _ := strconv.Atoi(m[3])
		inDoubt, _ := strconv.Atoi(m[4])
		if total != count || confirmed+failed+inDoubt != count {
			t.Errorf("summary %q does not add up to %d", m[0], count)
		}
		if strings.Contains(r.out, "exchange") {
			t.Errorf("a connection cut was reported as an exchange problem:\n%s", r.out)
		}
		inQueue := queueReady(t, addr, "doubt")
		t.Logf("%d in the queue; push printed:\n%s", inQueue, r.out)
		if inQueue < confirmed || inQueue > confirmed+inDoubt {
			t.Fatalf("queue holds %d, want between confirmed %d and confirmed+in doubt %d:\n%s", inQueue, confirmed, confirmed+inDoubt, r.out)
		}
		if inDoubt > 0 && !strings.Contains(r.out, "pushing them again may duplicate them") {
			t.Errorf("in-doubt jobs without the warning that a re-push may duplicate them:\n%s", r.out)
		}
		return
	}
}

// purge empties queue (it may not exist yet).
func purge(t *testing.T, addr, queue string) {
	t.Helper()
	_ = withRabbit(addr, func(ch *amqp.Channel) error {
		_, err := ch.QueuePurge(queue, false)
		return err
	})
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
