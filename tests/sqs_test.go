//go:build linux

package tests

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// The SQS scenarios of issue 7, run through the real supervisor binary and
// PHP workers against an SQS emulator of each test's own (moto, or fauxqs;
// see sqs_harness_test.go). They assert on queue state (GetQueueAttributes
// counts, messages read back from the dead-letter queue), on `jobs stat`
// and on the lines the behave.php worker writes.

func TestSQSPushAllAckedQueueEmpty(t *testing.T) {
	const total = 200
	endpoint := startSQS(t)
	q := newSQSInspector(t, endpoint)
	queue := sqsQueueName(t, "")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, sqsConfig(t, sqsOpts{endpoint: endpoint, queue: queue, log: log,
		workers: 2, concurrency: 4, prefetch: 10, maxAttempts: 3}))
	url := q.url(queue)

	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "hello", "--count", strconv.Itoa(total))
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= total })
	if st.Acked != total || st.Dead != 0 || st.Retried != 0 || st.Requeued != 0 {
		t.Fatalf("want %d acked and nothing else; got %+v", total, st)
	}
	if st.Driver != "sqs" || !st.Consuming {
		t.Fatalf("jobs stat: %+v", st)
	}
	done := dones(t, log)
	if len(done) != total {
		t.Fatalf("worker finished %d distinct jobs, want %d", len(done), total)
	}
	for id, n := range done {
		if n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
	stopSQSDrained(t, s, q, url)
}

func TestSQSNackWithDelayComesBackAsAttempt2(t *testing.T) {
	endpoint := startSQS(t)
	q := newSQSInspector(t, endpoint)
	queue := sqsQueueName(t, "")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, sqsConfig(t, sqsOpts{endpoint: endpoint, queue: queue, log: log,
		workers: 1, concurrency: 1, prefetch: 1, visibility: 10, maxAttempts: 3}))
	url := q.url(queue)

	out := s.mustCLI("push", "--pipeline", "default", "--job", "sqs-nack-delay", "--payload", "x")
	id := strings.TrimSpace(out)

	// While the retry waits out its 2s, the message stays in the queue
	// as the same message, in flight: a copy sent with a delay would show
	// as delayed (or as a second message).
	waitLog(t, log, 30*time.Second, "the first attempt's reply", func(lines []string) bool {
		return slices.Contains(lines, "done "+id+" 1 nack")
	})
	for range 5 {
		if c := q.counts(url); c.visible+c.notVisible+c.delayed > 0 && c != (sqsCounts{notVisible: 1}) {
			// Once the job came back and was acked the queue is
			// empty, which is fine; anything else is not.
			t.Fatalf("queue during the retry delay: %s; want the one message in flight", c)
		}
		time.Sleep(200 * time.Millisecond)
	}

	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if st.Retried != 1 || st.Dead != 0 || st.Requeued != 0 {
		t.Fatalf("want 1 retried then acked; got %+v", st)
	}
	runs := sqsJobs(t, log)
	if len(runs) != 2 {
		t.Fatalf("job ran %d times, want 2: %+v", len(runs), runs)
	}
	if runs[0].id != id || runs[1].id != id || runs[0].attempt != 1 || runs[1].attempt != 2 {
		t.Fatalf("runs %+v; want %s with attempt 1, then attempt 2", runs, id)
	}
	if gap := runs[1].at.Sub(runs[0].at); gap < 2*time.Second || gap > 10*time.Second {
		t.Errorf("the retried job came back after %s, want 2s (at least)", gap)
	}
	stopSQSDrained(t, s, q, url)
}

func TestSQSAlwaysFailingJobReachesDeadLetterQueue(t *testing.T) {
	endpoint := startSQS(t)
	q := newSQSInspector(t, endpoint)
	queue := sqsQueueName(t, "")
	dlq := queue + "-dead"
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, sqsConfig(t, sqsOpts{endpoint: endpoint, queue: queue, log: log,
		workers: 1, concurrency: 1, prefetch: 1, visibility: 10, maxAttempts: 3, deadLetter: dlq}))
	url, dlqURL := q.url(queue), q.url(dlq)

	out, code := s.cli("push", "--pipeline", "default", "--job", "always-fail", "--payload", "body-1",
		"--header", "x-key=alpha", "--header", "x-seq=7")
	if code != 0 {
		t.Fatalf("push exit %d: %s", code, out)
	}
	id := strings.TrimSpace(out)
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Dead >= 1 })
	if st.Dead != 1 || st.Acked != 0 || st.Retried != 2 {
		t.Fatalf("want 1 dead after 2 retries; got %+v", st)
	}

	var attempts []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			if f[1] != id {
				t.Fatalf("worker ran job %s, only %s was pushed", f[1], id)
			}
			attempts = append(attempts, f[2])
		}
	}
	if got := strings.Join(attempts, ","); got != "1,2,3" {
		t.Fatalf("the job ran with attempts [%s], want [1,2,3] (max_attempts 3)", got)
	}

	msgs := q.receiveAll(dlqURL)
	if len(msgs) != 1 {
		t.Fatalf("%d messages in the dead-letter queue %s, want 1", len(msgs), dlq)
	}
	m := msgs[0]
	got := fmt.Sprintf("rr_id %s, rr_job %s, rr_pipeline %s, rr_attempts %s, body %s",
		attr(m, "rr_id"), attr(m, "rr_job"), attr(m, "rr_pipeline"), attr(m, "rr_attempts"), aws.ToString(m.Body))
	if want := fmt.Sprintf("rr_id %s, rr_job always-fail, rr_pipeline default, rr_attempts 3, body body-1", id); got != want {
		t.Errorf("dead-lettered message: %s; want %s", got, want)
	}
	if attr(m, "rr_dead_reason") == "" {
		t.Errorf("dead-lettered message has no rr_dead_reason: %v", m.MessageAttributes)
	}
	want := map[string][]string{"x-key": {"alpha"}, "x-seq": {"7"}}
	if h := headersAttr(t, m); !maps.EqualFunc(h, want, slices.Equal) {
		t.Errorf("headers %v in the dead-letter queue, want %v", h, want)
	}

	// Dead stays dead: the job does not run again (a retry would come at
	// once: no delay, no error_visibility_timeout).
	lines := len(readLines(t, log))
	time.Sleep(1500 * time.Millisecond)
	if st := s.stat("default"); st.Dead != 1 || st.Active != 0 || len(readLines(t, log)) != lines {
		t.Fatalf("after dead: %+v, %d new worker log lines", st, len(readLines(t, log))-lines)
	}
	stopSQSDrained(t, s, q, url)
}

func TestSQSRedrivePolicyMovesDeadJobWithoutDeadLetter(t *testing.T) {
	endpoint := startSQS(t)
	q := newSQSInspector(t, endpoint)
	queue := sqsQueueName(t, "")
	dlqURL, dlqARN := q.createQueue(queue + "-redrive")
	log := filepath.Join(t.TempDir(), "jobs.log")
	// No dead_letter: the queue's own redrive policy (maxReceiveCount =
	// max_attempts) moves the dead job, so the driver must leave the
	// original message in the queue for SQS to move.
	s := startConsuming(t, sqsConfig(t, sqsOpts{endpoint: endpoint, queue: queue, log: log,
		workers: 1, concurrency: 1, prefetch: 1, visibility: 10, maxAttempts: 3,
		attributes: map[string]string{"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"3"}`, dlqARN)}}))
	url := q.url(queue)

	out := s.mustCLI("push", "--pipeline", "default", "--job", "always-fail", "--payload", "body-2", "--header", "x-key=beta")
	id := strings.TrimSpace(out)
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Dead >= 1 })

	// SQS moves the message when the next receive passes maxReceiveCount.
	deadline := time.Now().Add(20 * time.Second)
	for q.counts(dlqURL).visible == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the dead job never reached the redrive queue; queue: %s", q.counts(url))
		}
		time.Sleep(200 * time.Millisecond)
	}
	msgs := q.receiveAll(dlqURL)
	if len(msgs) != 1 {
		t.Fatalf("%d messages in the redrive queue, want 1", len(msgs))
	}
	m := msgs[0]
	got := fmt.Sprintf("rr_id %s, rr_job %s, body %s, receive count %s",
		attr(m, "rr_id"), attr(m, "rr_job"), aws.ToString(m.Body), m.Attributes["ApproximateReceiveCount"])
	// The original message, received max_attempts times by the
	// supervisor and once more by the receive that moved it (SQS's
	// count goes on in the dead-letter queue; moto's too).
	if want := fmt.Sprintf("rr_id %s, rr_job always-fail, body body-2, receive count", id); !strings.HasPrefix(got, want) {
		t.Errorf("redriven message: %s; want %s ...", got, want)
	}
	t.Logf("redriven: %s", got)
	if n, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"]); n < 3 {
		t.Errorf("redriven message was received %d times, want the original message (at least 3)", n)
	}
	if h := headersAttr(t, m); !slices.Equal(h["x-key"], []string{"beta"}) {
		t.Errorf("headers %v in the redrive queue, want x-key beta", h)
	}
	var attempts []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			attempts = append(attempts, f[2])
		}
	}
	if got := strings.Join(attempts, ","); got != "1,2,3" {
		t.Errorf("the job ran with attempts [%s], want [1,2,3]", got)
	}
	if st := s.stat("default"); st.Dead != 1 || st.Acked != 0 || st.Active != 0 {
		t.Errorf("after the redrive: %+v", st)
	}
	stopSQSDrained(t, s, q, url)
}

func TestSQSHeartbeatLongJobDeliveredOnce(t *testing.T) {
	const visibility = 2 // seconds; the job runs 3x as long
	endpoint := startSQS(t)
	q := newSQSInspector(t, endpoint)
	queue := sqsQueueName(t, "")
	log := filepath.Join(t.TempDir(), "jobs.log")
	// Two idle slots and workers: a message that became visible again
	// mid-job would be received and run a second time.
	s := startConsuming(t, sqsConfig(t, sqsOpts{endpoint: endpoint, queue: queue, log: log,
		workers: 2, concurrency: 2, prefetch: 1, visibility: visibility, maxAttempts: 3}))
	url := q.url(queue)

	out := s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", strconv.Itoa(3*visibility*1000))
	id := strings.TrimSpace(out)
	waitLog(t, log, 30*time.Second, "the job to start", func(lines []string) bool { return len(lines) > 0 })

	// The message never becomes visible while the job runs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := s.stat("default")
		if st.Acked == 1 {
			if st.Retried != 0 || st.Dead != 0 || st.Requeued != 0 {
				t.Fatalf("want 1 acked and nothing else; got %+v", st)
			}
			break
		}
		if c := q.counts(url); c.visible != 0 || c.delayed != 0 {
			t.Fatalf("the running job's message came back into the queue: %s", c)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job was not acked within 30s: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	starts, dones := runs(t, log)
	if len(starts) != 1 || starts[id] != 1 || dones[id] != 1 {
		t.Fatalf("job %s started %v and finished %v; want exactly once", id, starts, dones)
	}
	stopSQSDrained(t, s, q, url)
}

func TestSQSFIFOKeepsOrderPerGroup(t *testing.T) {
	const keys, perKey = 5, 20
	endpoint := startSQS(t)
	q := newSQSInspector(t, endpoint)
	queue := sqsQueueName(t, ".fifo")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, sqsConfig(t, sqsOpts{endpoint: endpoint, queue: queue, log: log,
		workers: 2, concurrency: 4, prefetch: 10, visibility: 10, maxAttempts: 3}))
	url := q.url(queue)

	// Paused while the jobs are pushed, so that every group has all its
	// jobs in the queue when consuming starts. They are pushed in runs of
	// 5 jobs of one key (`supervisor push --key`): group-0 0..4, group-1
	// 0..4, ..., group-0 5..9, ...; a receive brings several jobs of one
	// group at once, which the 4 slots could run side by side.
	s.mustCLI("jobs", "pause", "default")
	const run = 5
	for first := 0; first < perKey; first += run {
		for k := range keys {
			key := fmt.Sprintf("group-%d", k)
			for i := first; i < first+run; i++ {
				out, code := s.cli("push", "--pipeline", "default", "--job", "sqs-record", "--payload", "x",
					"--key", key, "--header", "x-key="+key, "--header", fmt.Sprintf("x-seq=%d", i))
				if code != 0 {
					t.Fatalf("push %s #%d: exit %d: %s", key, i, code, out)
				}
			}
		}
	}
	// A long poll under way at the pause may have taken a message in (the
	// driver holds it for the resume): it is in flight.
	if c := q.counts(url); c.visible+c.notVisible != keys*perKey || c.delayed != 0 {
		t.Fatalf("queue after %d confirmed pushes into the paused pipeline: %s", keys*perKey, c)
	}
	s.mustCLI("jobs", "resume", "default")

	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= keys*perKey })
	if st.Acked != keys*perKey || st.Retried != 0 || st.Dead != 0 || st.Requeued != 0 {
		t.Fatalf("want %d acked and nothing else; got %+v", keys*perKey, st)
	}
	// The rec lines are written before the reply, in the order the jobs
	// of a group ran.
	seen := map[string][]string{}
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "rec" {
			if len(f) != 3 {
				t.Fatalf("bad rec line %q", l)
			}
			seen[f[1]] = append(seen[f[1]], f[2])
		}
	}
	var want []string
	for i := range perKey {
		want = append(want, strconv.Itoa(i))
	}
	if len(seen) != keys {
		t.Errorf("jobs of %d groups ran, want %d: %v", len(seen), keys, seen)
	}
	for k := range keys {
		key := fmt.Sprintf("group-%d", k)
		if !slices.Equal(seen[key], want) {
			t.Errorf("%s ran in the order %v, want %v", key, seen[key], want)
		}
	}
	// SQS takes no per-message delay on a FIFO queue: the push says so
	// and nothing is sent.
	out, code := s.cli("push", "--pipeline", "default", "--job", "sqs-record", "--payload", "x", "--key", "group-0", "--delay", "2s")
	if code == 0 || !strings.Contains(out, "FIFO") {
		t.Errorf("a delayed push to a FIFO queue: exit %d: %s; want a failure that names FIFO", code, out)
	}
	stopSQSDrained(t, s, q, url)
}
