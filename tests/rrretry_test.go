package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Retries as RoadRunner runs them for what the worker decides, through the
// real binary with a worker that writes the RoadRunner PHP SDK's bytes
// (tests/testdata/workers/rrsdk.php): on a pipeline without a retry:
// section a legacy fail(requeue: true) keeps its headers and delay and,
// like requeue(), has no attempt cap; with retry: the cap applies; what
// the worker did not decide (a crash) stays capped at the default 3
// attempts either way.

const rrsdkWorker = "php tests/testdata/workers/rrsdk.php"

// rrRuns is what rrsdk.php saw of one job's runs, in order.
type rrRuns struct {
	attempts []string    // the attempts header the worker set ("-": none)
	xAttempt []string    // the x-attempt header the supervisor set
	at       []time.Time // when each run started
}

// rrStarts returns the runs of each job id rrsdk.php logged.
func rrStarts(t *testing.T, log string) map[string]*rrRuns {
	t.Helper()
	out := map[string]*rrRuns{}
	for _, j := range loggedJobs(t, log, "rrjob", 5) {
		r := out[j.id]
		if r == nil {
			r = &rrRuns{}
			out[j.id] = r
		}
		r.attempts = append(r.attempts, j.fields[4])
		r.xAttempt = append(r.xAttempt, j.fields[2])
		r.at = append(r.at, j.at)
	}
	return out
}

// seq returns "1,2,...,n".
func seq(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprint(i + 1)
	}
	return strings.Join(s, ",")
}

// rrMemoryConfig is a memory pipeline "default" run by rrsdk.php; retry is
// the pipeline's retry: section ("" for none), indented by 6 spaces.
func rrMemoryConfig(t *testing.T, log, retry string) string {
	t.Helper()
	return e2eConfig(t, rrsdkWorker, log, 2, "", "      driver: memory\n      config:\n        priority: 10\n"+retry)
}

// checkRuns wants job id to have run len(attempts) times, seeing the
// attempts header it set on the reply before each (attempts, "-" for
// none) and x-attempt 1, 2, ..., with at least delay between two runs.
func checkRuns(t *testing.T, log, id string, delay time.Duration, attempts ...string) {
	t.Helper()
	r := rrStarts(t, log)[id]
	if r == nil {
		t.Fatalf("job %s never ran", id)
	}
	if got, want := strings.Join(r.attempts, ","), strings.Join(attempts, ","); got != want {
		t.Errorf("job %s saw attempts headers %s, want %s", id, got, want)
	}
	if got, want := strings.Join(r.xAttempt, ","), seq(len(attempts)); got != want {
		t.Errorf("job %s saw x-attempt %s, want %s", id, got, want)
	}
	for i := 1; i < len(r.at); i++ {
		if gap := r.at[i].Sub(r.at[i-1]); gap < delay {
			t.Errorf("job %s: run %d came %s after run %d, want at least the %s the worker asked for", id, i+1, gap, i, delay)
		}
	}
}

// TestRRFailRequeueCountsInHeaderMemory: RoadRunner's test worker that
// counts attempts in a header set on fail(requeue: true) acks on its 4th
// delivery, with the SDK 4.x (string) and 2.x (integer) header encodings;
// the delay it names is kept.
func TestRRFailRequeueCountsInHeaderMemory(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, rrMemoryConfig(t, log, ""))

	sdk4 := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-fail-count", "--payload", `{"delay":1,"sdk":"4"}`))
	sdk2 := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-fail-count", "--payload", `{"delay":0,"sdk":"2"}`))
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 2 })
	if st.Requeued != 6 || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want 2 acked after 3 requeues each; got %+v", st)
	}
	checkRuns(t, log, sdk4, time.Second, "-", "1", "2", "3")
	checkRuns(t, log, sdk2, 0, "-", "1", "2", "3")
}

// TestRRFailRequeueCountsInHeaderAMQP: the same on RabbitMQ (a classic
// queue): the header and delay travel through the republished copy and
// the delay queue, and the queues are empty once the job is acked. A
// worker that requeue()s 10 times then acks runs 11 times.
func TestRRFailRequeueCountsInHeaderAMQP(t *testing.T) {
	addr := amqpBaseURL()
	needRabbit(t, addr)
	q := rabbitQueue(t, addr, nil, time.Second)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, e2eConfig(t, rrsdkWorker, log, 2, "amqp:\n  addr: "+addr+"\n", fmt.Sprintf(`      driver: amqp
      config:
        queue: %s
        prefetch: 4
        redial_timeout: 5s
`, q)))

	fail := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-fail-count", "--payload", `{"delay":1,"sdk":"4"}`))
	requeue := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-requeue-count", "--payload", "x"))
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 2 })
	if st.Requeued != 3+10 || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want 2 acked after 3 and 10 requeues; got %+v", st)
	}
	checkRuns(t, log, fail, time.Second, "-", "1", "2", "3")
	checkRuns(t, log, requeue, 0, append([]string{"-"}, strings.Split(seq(10), ",")...)...)
	if n := queueReady(t, addr, "pipevisor.delay.1000.."+q); n != 0 {
		t.Errorf("%d messages left in the delay queue", n)
	}
	stopDrained(t, s, addr, q)
}

// TestRRFailRequeueCountsInHeaderKafka: the same on Kafka, where the
// retry is the same record redelivered in place with the headers the
// worker set: the job acks on its 4th delivery and the partition is
// committed past it.
func TestRRFailRequeueCountsInHeaderKafka(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:1")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, e2eConfig(t, rrsdkWorker, log, 1, "kafka:\n  brokers: [\""+strings.Join(brokers, `", "`)+"\"]\n", `      driver: kafka
      config:
        consumer_options: {topics: [jobs]}
        group_options: {group_id: rrretry}
`))

	fail := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-fail-count", "--payload", `{"delay":1,"sdk":"4"}`))
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if st.Requeued != 3 || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want 1 acked after 3 requeues; got %+v", st)
	}
	checkRuns(t, log, fail, time.Second, "-", "1", "2", "3")
	newKafkaAdmin(t, brokers).waitAllCommitted("rrretry", "jobs", 1, 10*time.Second)
}

// TestRRRequeueTenTimesWithoutRetry: requeue() 10 times then ack, on a
// pipeline without retry:: acked once after 10 requeues (11 runs).
func TestRRRequeueTenTimesWithoutRetry(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, rrMemoryConfig(t, log, ""))

	id := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-requeue-count", "--payload", "x"))
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if st.Requeued != 10 || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want 1 acked after 10 requeues; got %+v", st)
	}
	checkRuns(t, log, id, 0, append([]string{"-"}, strings.Split(seq(10), ",")...)...)
}

// TestRRRequeueWithRetryEndsDeadAfterMaxAttempts: the same worker on a
// pipeline with retry: {max_attempts: 3} is dead after 3 runs.
func TestRRRequeueWithRetryEndsDeadAfterMaxAttempts(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, rrMemoryConfig(t, log, "      retry:\n        max_attempts: 3\n"))

	id := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-requeue-count", "--payload", "x"))
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Dead == 1 })
	if st.Requeued != 2 || st.Acked != 0 || st.Retried != 0 {
		t.Fatalf("want dead after 2 requeues; got %+v", st)
	}
	checkRuns(t, log, id, 0, "-", "1", "2")
	if st := s.stat("default"); st.Dead != 1 || st.Active != 0 || st.Delayed != 0 {
		t.Errorf("after dead: %+v", st)
	}
}

// TestRRCrashWithoutRetryEndsDeadAfterDefaultAttempts: a job whose worker
// dies every time is what the worker did not decide: without retry: it is
// still dead after the default 3 attempts.
func TestRRCrashWithoutRetryEndsDeadAfterDefaultAttempts(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, rrMemoryConfig(t, log, ""))

	id := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-crash", "--payload", "x"))
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Dead == 1 })
	if st.Retried != 2 || st.Acked != 0 || st.Requeued != 0 {
		t.Fatalf("want dead after 2 retries; got %+v", st)
	}
	checkRuns(t, log, id, 900*time.Millisecond, "-", "-", "-") // default backoff 1s, 2s, 10% jitter
}
