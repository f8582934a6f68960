package tests

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// The RabbitMQ scenarios of issue 5 (and issue 9's /ready on a broker-side
// close), run through the real supervisor binary and PHP workers against
// the RabbitMQ on 127.0.0.1:5672 (SUPERVISOR_AMQP_URL overrides it). They
// assert on broker state (message counts read with a passive queue.declare,
// dead-lettered messages read back with basic.get), on `jobs stat`, on
// /ready and on the lines the behave.php worker writes. Every test uses
// queues of its own; the redial test uses a vhost of its own, so closing
// its connections leaves the other tests on the broker alone.

// amqpBaseURL is the broker the tests use.
func amqpBaseURL() string {
	if a := os.Getenv("SUPERVISOR_AMQP_URL"); a != "" {
		return a
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// needRabbit fails the test in CI, or skips it elsewhere, when php or the
// broker at addr is missing.
func needRabbit(t *testing.T, addr string) {
	t.Helper()
	requireTool(t, "php")
	conn, err := amqp.DialConfig(addr, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err == nil {
		_ = conn.Close()
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("RabbitMQ unreachable: %v", err)
	}
	t.Skipf("RabbitMQ unreachable: %v (set CI to make this fail)", err)
}

// withRabbit runs fn on a connection and channel of its own, closed after
// (a test that closes the supervisor's connections must not break its own
// inspection).
func withRabbit(addr string, fn func(ch *amqp.Channel) error) error {
	conn, err := amqp.DialConfig(addr, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return fn(ch)
}

// rabbitQueue returns a queue name unique to the test. When the test ends
// (after the supervisor, whose cleanup is registered later, was killed) the
// queue is deleted with the suffixed queues (".dead") and the delay queues
// the driver declares for republishing to it after each of delays.
func rabbitQueue(t *testing.T, addr string, suffixes []string, delays ...time.Duration) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("pv-e2e.")
	for _, r := range t.Name() {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	b.WriteString("." + strings.ToLower(rand.Text()[:8]))
	q := b.String()
	names := []string{q}
	for _, s := range suffixes {
		names = append(names, q+s)
	}
	for _, d := range delays {
		names = append(names, fmt.Sprintf("pipevisor.delay.%d..%s", d.Milliseconds(), q))
	}
	t.Cleanup(func() {
		for _, n := range names {
			// One connection per queue: deleting a missing queue may
			// close the channel on older brokers.
			_ = withRabbit(addr, func(ch *amqp.Channel) error {
				_, err := ch.QueueDelete(n, false, false, false)
				return err
			})
		}
	})
	return q
}

// queueReady returns the ready messages of queue (passive queue.declare).
func queueReady(t *testing.T, addr, queue string) int {
	t.Helper()
	var q amqp.Queue
	if err := withRabbit(addr, func(ch *amqp.Channel) (err error) {
		q, err = ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		return err
	}); err != nil {
		t.Fatalf("passive declare of %s: %v", queue, err)
	}
	return q.Messages
}

// getAll takes every message of queue with basic.get (auto-ack).
func getAll(t *testing.T, addr, queue string) (out []amqp.Delivery) {
	t.Helper()
	if err := withRabbit(addr, func(ch *amqp.Channel) error {
		for {
			m, ok, err := ch.Get(queue, true)
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

// amqpOpts describes the amqp pipeline "default" that amqpConfig writes.
type amqpOpts struct {
	addr        string // broker URL (a test vhost for the redial test)
	queue       string
	log         string // E2E_LOG of the workers
	workers     int
	concurrency int
	prefetch    int
	maxAttempts int    // 0: no retry: section (worker decisions uncapped, as RoadRunner)
	deadLetter  string // "" = none
	status      string // status.address; "" = off
}

func amqpConfig(t *testing.T, o amqpOpts) string {
	t.Helper()
	var extra, retry, dead string
	if o.status != "" {
		extra = "status:\n  address: " + o.status + "\n"
	}
	if o.maxAttempts > 0 {
		retry = fmt.Sprintf("      retry:\n        max_attempts: %d\n        backoff: {initial: 100ms, max: 100ms, multiplier: 1, jitter: 0}\n", o.maxAttempts)
	}
	if o.deadLetter != "" {
		dead = "      dead_letter: " + o.deadLetter + "\n"
	}
	return e2eConfig(t, behaveWorker, o.log, o.workers, "amqp:\n  addr: "+o.addr+"\n"+extra, fmt.Sprintf(`      driver: amqp
      concurrency: %d
%s%s      config:
        queue: %s
        prefetch: %d
        redial_timeout: 5s
`, o.concurrency, retry, dead, o.queue, o.prefetch))
}

// stopDrained wants queue empty, then stops the supervisor with SIGTERM,
// wants exit code 0 and the queue still empty: a delivery left unacked
// would be back in the queue once the supervisor's connection is gone.
func stopDrained(t *testing.T, s *supervisor, addr, queue string) {
	t.Helper()
	if n := queueReady(t, addr, queue); n != 0 {
		t.Errorf("%d messages left in %s", n, queue)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if n := queueReady(t, addr, queue); n != 0 {
		t.Errorf("%d messages back in %s after the supervisor stopped", n, queue)
	}
}

// ajob is one "ajob <id> <attempt> <unix-ms> <payload> <note>" line of
// behave.php.
type ajob struct {
	loggedJob
	payload string
	note    string
}

func amqpJobs(t *testing.T, log string) []ajob {
	t.Helper()
	var out []ajob
	for _, j := range loggedJobs(t, log, "ajob", 6) {
		out = append(out, ajob{loggedJob: j, payload: j.fields[4], note: j.fields[5]})
	}
	return out
}

func TestAMQPPush1000AllAckedQueueDrained(t *testing.T) {
	addr := amqpBaseURL()
	needRabbit(t, addr)
	q := rabbitQueue(t, addr, nil)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, amqpConfig(t, amqpOpts{addr: addr, queue: q, log: log, workers: 2, concurrency: 4, prefetch: 10, maxAttempts: 3}))

	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "hello", "--count", "1000")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= 1000 })
	if st.Acked != 1000 || st.Dead != 0 || st.Retried != 0 || st.Requeued != 0 {
		t.Fatalf("want 1000 acked and nothing else; got %+v", st)
	}
	if st.Driver != "amqp" || !st.Consuming {
		t.Fatalf("jobs stat: %+v", st)
	}
	if n := len(dones(t, log)); n != 1000 {
		t.Fatalf("worker finished %d distinct jobs, want 1000", n)
	}
	stopDrained(t, s, addr, q)
}

// TestAMQPNackWithRedeliveryKeepsQueueOrder: on a pipeline without retry:
// a NACK with redelivery and no delay is requeued in place (basic.nack),
// as under RoadRunner, and RabbitMQ keeps its position.
func TestAMQPNackWithRedeliveryKeepsQueueOrder(t *testing.T) {
	addr := amqpBaseURL()
	needRabbit(t, addr)
	q := rabbitQueue(t, addr, nil)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, amqpConfig(t, amqpOpts{addr: addr, queue: q, log: log, workers: 1, concurrency: 1, prefetch: 10}))

	// Paused while 1..100 are published, so the whole sequence is in the
	// queue before the first job runs.
	s.mustCLI("jobs", "pause", "default")
	jobs := make([]consumer.Job, 100)
	for i := range jobs {
		n := i + 1
		jobs[i] = consumer.Job{ID: fmt.Sprintf("order-%03d", n), Name: "amqp-order", Pipeline: "default", Payload: []byte(strconv.Itoa(n))}
	}
	s.rpcPush(jobs, 1)
	if n := queueReady(t, addr, q); n != 100 {
		t.Fatalf("%d messages in %s after 100 confirmed pushes", n, q)
	}
	s.mustCLI("jobs", "resume", "default")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= 100 })
	if st.Acked != 100 || st.Retried != 1 || st.Dead != 0 {
		t.Fatalf("want 100 acked after 1 retry; got %+v", st)
	}

	var want []string
	for i := 1; i <= 100; i++ {
		want = append(want, strconv.Itoa(i))
		if i == 21 {
			want = append(want, "21")
		}
	}
	var got []string
	for _, j := range amqpJobs(t, log) {
		got = append(got, j.payload)
		if j.payload == "21" && len(got) == 22 && j.attempt != 2 {
			t.Errorf("the redelivered job 21 ran with attempt %d, want 2", j.attempt)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the worker saw\n%v\nwant\n%v", got, want)
	}
	stopDrained(t, s, addr, q)
}

func TestAMQPRequeueWithDelayArrivesLaterWithNewHeaders(t *testing.T) {
	addr := amqpBaseURL()
	needRabbit(t, addr)
	q := rabbitQueue(t, addr, nil, 2*time.Second)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, amqpConfig(t, amqpOpts{addr: addr, queue: q, log: log, workers: 1, concurrency: 1, prefetch: 1, maxAttempts: 3}))

	out := s.mustCLI("push", "--pipeline", "default", "--job", "amqp-requeue-delay", "--payload", "x")
	id := strings.TrimSpace(out)
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if st.Requeued != 1 || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want 1 requeued then acked; got %+v", st)
	}
	runs := amqpJobs(t, log)
	if len(runs) != 2 {
		t.Fatalf("job ran %d times, want 2: %+v", len(runs), runs)
	}
	first, second := runs[0], runs[1]
	if first.id != id || second.id != id {
		t.Fatalf("runs of %q: %+v", id, runs)
	}
	if first.attempt != 1 || first.note != "-" {
		t.Errorf("first run: attempt %d, x-note %q; want 1 and none", first.attempt, first.note)
	}
	if second.attempt != 2 || second.note != "requeued" {
		t.Errorf("second run: attempt %d, x-note %q; want 2 and \"requeued\"", second.attempt, second.note)
	}
	if gap := second.at.Sub(first.at); gap < 2*time.Second || gap > 10*time.Second {
		t.Errorf("the requeued job came back after %s, want 2s (at least)", gap)
	}
	stopDrained(t, s, addr, q)
}

func TestAMQPAlwaysFailingJobsEndInDeadLetterQueueWithHeaders(t *testing.T) {
	addr := amqpBaseURL()
	needRabbit(t, addr)
	q := rabbitQueue(t, addr, []string{".dead"}, 100*time.Millisecond, time.Second)
	dlq := q + ".dead"
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, amqpConfig(t, amqpOpts{addr: addr, queue: q, log: log, workers: 2, concurrency: 2, prefetch: 2, maxAttempts: 3, deadLetter: dlq}))

	// Both retry through a delay queue (a republished copy): always-fail
	// names no delay, so under retry: it waits for the 100ms backoff;
	// amqp-fail-delay asks for 1s.
	pushed := map[string]string{} // id -> job name
	for _, p := range [][]string{
		{"--job", "always-fail", "--header", "x-key=alpha", "--header", "x-seq=7"},
		{"--job", "amqp-fail-delay", "--header", "x-key=beta"},
	} {
		out, code := s.cli(append([]string{"push", "--pipeline", "default", "--payload", "body-" + p[1]}, p...)...)
		if code != 0 {
			t.Fatalf("push %v: exit %d: %s", p, code, out)
		}
		pushed[strings.TrimSpace(out)] = p[1]
	}
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Dead >= 2 })
	if st.Dead != 2 || st.Acked != 0 || st.Retried != 4 {
		t.Fatalf("want 2 dead after 2 retries each; got %+v", st)
	}

	msgs := getAll(t, addr, dlq)
	if len(msgs) != 2 {
		t.Fatalf("%d messages in the dead-letter queue %s, want 2", len(msgs), dlq)
	}
	for _, m := range msgs {
		id, _ := m.Headers["rr_id"].(string)
		name, ok := pushed[id]
		if !ok {
			t.Fatalf("dead-lettered message with rr_id %q (headers %v) was not pushed", id, m.Headers)
		}
		got := fmt.Sprintf("job %v, message id %s, body %s, x-attempt %v, x-dead-queue %v",
			m.Headers["rr_job"], m.MessageId, m.Body, m.Headers["x-attempt"], m.Headers["x-dead-queue"])
		if want := fmt.Sprintf("job %s, message id %s, body body-%s, x-attempt 3, x-dead-queue %s", name, id, name, q); got != want {
			t.Errorf("dead-lettered message: %s; want %s", got, want)
		}
		if r, _ := m.Headers["x-dead-reason"].(string); r == "" {
			t.Errorf("%s: no x-dead-reason header: %v", name, m.Headers)
		}
		raw, _ := m.Headers["rr_headers"].([]byte)
		var user map[string][]string
		if err := json.Unmarshal(raw, &user); err != nil {
			t.Fatalf("%s: rr_headers %q: %v", name, raw, err)
		}
		want := map[string][]string{"x-key": {"alpha"}, "x-seq": {"7"}}
		if name == "amqp-fail-delay" {
			want = map[string][]string{"x-key": {"beta"}}
		}
		if !maps.EqualFunc(user, want, slices.Equal) {
			t.Errorf("%s: headers %v in the dead-letter queue, want %v", name, user, want)
		}
	}

	// Each job ran exactly max_attempts times, with attempts 1, 2, 3; the
	// delayed retries came back after their second each.
	starts := map[string][]string{}
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			starts[f[1]] = append(starts[f[1]], f[2])
		}
	}
	for id, name := range pushed {
		if got := strings.Join(starts[id], ","); got != "1,2,3" {
			t.Errorf("%s ran with attempts [%s], want [1,2,3]", name, got)
		}
	}
	runs := amqpJobs(t, log)
	for i := 1; i < len(runs); i++ {
		if gap := runs[i].at.Sub(runs[i-1].at); gap < time.Second {
			t.Errorf("amqp-fail-delay attempt %d ran %s after attempt %d, want 1s", runs[i].attempt, gap, runs[i-1].attempt)
		}
	}
	// Dead stays dead: nothing runs again (a retry would come within 1s).
	lines := len(readLines(t, log))
	time.Sleep(1500 * time.Millisecond)
	if st := s.stat("default"); st.Dead != 2 || st.Active != 0 || len(readLines(t, log)) != lines {
		t.Fatalf("after dead: %+v, %d new worker log lines", st, len(readLines(t, log))-lines)
	}
	stopDrained(t, s, addr, q)
}

// rabbitmqctl runs rabbitmqctl, failing the test on error.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// rabbitVhost creates a vhost for guest, deleted when the test ends (after
// the supervisor, whose cleanup is registered later), and returns its name
// and the broker URL that uses it.
func rabbitVhost(t *testing.T) (vhost, addr string) {
	t.Helper()
	needRabbit(t, amqpBaseURL())
	requireTool(t, "rabbitmqctl")
	vhost = "pv-e2e-" + strings.ToLower(rand.Text()[:8])
	rabbitmqctl(t, "add_vhost", vhost)
	t.Cleanup(func() { rabbitmqctl(t, "delete_vhost", vhost) })
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	u, err := url.Parse(amqpBaseURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + vhost
	return vhost, u.String()
}

// waitReady polls /ready until it answers want, and returns the body.
func waitReady(t *testing.T, url string, want int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %d %q after %s, want %d", url, code, body, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAMQPRedialAcksEveryJobOnceAndReadyFollowsTheConnection(t *testing.T) {
	vhost, addr := rabbitVhost(t)
	const (
		total       = 1000
		concurrency = 4
	)
	log := filepath.Join(t.TempDir(), "jobs.log")
	statusAddr := freeAddr(t)
	s := startConsuming(t, amqpConfig(t, amqpOpts{addr: addr, queue: "redial", log: log, workers: 2,
		concurrency: concurrency, prefetch: 10, maxAttempts: 3, status: statusAddr}))
	ready := "http://" + statusAddr + "/ready"
	waitReady(t, ready, http.StatusOK, 10*time.Second)

	jobs := make([]consumer.Job, total)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("redial-%04d", i), Name: "slow", Pipeline: "default", Payload: []byte("8")}
	}
	s.rpcPush(jobs, 250)
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked >= total/10 })

	// First outage: guest loses its permissions before its connections
	// are closed, so the redial fails until they are back and /ready can
	// be seen red; jobs stat shows the pipeline down meanwhile.
	rabbitmqctl(t, "clear_permissions", "-p", vhost, "guest")
	rabbitmqctl(t, "close_all_connections", "--vhost", vhost, "e2e redial test")
	body := waitReady(t, ready, http.StatusServiceUnavailable, 10*time.Second)
	if !strings.Contains(body, "default") {
		t.Errorf("/ready 503 body %q does not name the pipeline", body)
	}
	if st := s.stat("default"); st.Consuming {
		t.Errorf("jobs stat says consuming while the broker refuses the pipeline: %+v", st)
	}
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	waitReady(t, ready, http.StatusOK, 20*time.Second)
	s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return st.Consuming })

	// Second outage: a plain close, redialled at once.
	rabbitmqctl(t, "close_all_connections", "--vhost", vhost, "e2e redial test")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= total })
	if st.Acked != total || st.Dead != 0 {
		t.Fatalf("want %d acked, 0 dead; got %+v", total, st)
	}
	waitReady(t, ready, http.StatusOK, 10*time.Second)

	// Every job ran; a job runs twice only when it was in flight when its
	// channel died (its settlement could not reach the broker), so at most
	// concurrency jobs per outage.
	done := dones(t, log)
	extra := 0
	for _, j := range jobs {
		switch n := done[j.ID]; {
		case n == 0:
			t.Errorf("job %s never ran", j.ID)
		case n > 1:
			extra += n - 1
		}
	}
	if len(done) != total {
		t.Errorf("the worker ran %d distinct jobs, want %d", len(done), total)
	}
	if extra > 2*concurrency {
		t.Errorf("%d runs beyond one per job over two outages, want at most %d", extra, 2*concurrency)
	}
	t.Logf("%d jobs ran twice (in flight at an outage)", extra)
	lines := len(readLines(t, log))
	stopDrained(t, s, addr, "redial")
	if n := len(readLines(t, log)); n != lines {
		t.Errorf("%d more worker log lines after every job was acked", n-lines)
	}
}
