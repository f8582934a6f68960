package tests

import (
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// The pipeline's prefetch on RabbitMQ: basic.qos is the configured
// prefetch, not the free slots, so deliveries wait in the driver ahead of
// the slots (as under RoadRunner), and a pause or a SIGTERM hands the
// unstarted ones back to the queue. The broker's own counts (messages
// ready, read with a passive queue.declare on a connection of the test)
// show how many deliveries the supervisor holds.

// prefetchJobs is how many jobs the prefetch tests push; each sleeps
// prefetchJobMs in the worker, so two workers need seconds for them all.
const (
	prefetchJobs  = 150
	prefetchJobMs = "100"
	prefetchQos   = 100
)

// startPrefetched starts a supervisor with 2 workers, concurrency 2 and
// prefetch 100 on a fresh queue, fills the queue while the pipeline is
// paused and resumes it, then waits until the broker shows at least 90
// unacknowledged deliveries (messages neither ready nor acked) while no
// more than 2 jobs run. It returns the supervisor, queue, worker log and
// the pushed ids.
func startPrefetched(t *testing.T) (s *supervisor, q, log string, ids []string) {
	t.Helper()
	addr := amqpBaseURL()
	needRabbit(t, addr)
	q = rabbitQueue(t, addr, nil)
	log = filepath.Join(t.TempDir(), "jobs.log")
	s = startConsuming(t, amqpConfig(t, amqpOpts{addr: addr, queue: q, log: log, workers: 2, concurrency: 2, prefetch: prefetchQos}))

	s.mustCLI("jobs", "pause", "default")
	jobs := make([]consumer.Job, prefetchJobs)
	for i := range jobs {
		id := fmt.Sprintf("pf-%03d", i)
		ids = append(ids, id)
		jobs[i] = consumer.Job{ID: id, Name: "slow", Pipeline: "default", Payload: []byte(prefetchJobMs)}
	}
	s.rpcPush(jobs, 50)
	if n := queueReady(t, addr, q); n != prefetchJobs {
		t.Fatalf("%d messages in %s after %d confirmed pushes", n, q, prefetchJobs)
	}
	s.mustCLI("jobs", "resume", "default")

	deadline := time.Now().Add(20 * time.Second)
	for {
		// Ready first, acked after: acked only grows, so held is never
		// more than what the broker had unacknowledged.
		ready := queueReady(t, addr, q)
		st := s.stat("default")
		held := prefetchJobs - ready - int(st.Acked)
		if st.Active > 2 {
			t.Fatalf("%d jobs running with concurrency 2: %+v", st.Active, st)
		}
		if held >= prefetchQos-10 {
			t.Logf("broker: %d ready, %d acked, %d unacknowledged; %d running", ready, st.Acked, held, st.Active)
			return s, q, log, ids
		}
		if st.Acked >= prefetchJobs-prefetchQos || time.Now().After(deadline) {
			t.Fatalf("the supervisor never held the prefetch of %d: last %d ready, %d acked, %d unacknowledged (basic.qos follows the free slots?)",
				prefetchQos, ready, st.Acked, held)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startedJobs returns, per job id, the attempts the worker started it with.
func startedJobs(t *testing.T, log string) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, l := range readLines(t, log) {
		var id string
		var attempt int
		if n, _ := fmt.Sscanf(l, "start %s %d", &id, &attempt); n == 2 {
			out[id] = append(out[id], attempt)
		}
	}
	return out
}

// TestAMQPPrefetchHeldAheadOfSlotsGoesBackOnSIGTERM: with prefetch 100 and
// concurrency 2 the broker shows about 100 unacknowledged deliveries while
// 2 jobs run; SIGTERM then returns every unstarted one to the queue with
// its headers (x-attempt) as pushed: no job lost, none run twice, no
// attempt spent.
func TestAMQPPrefetchHeldAheadOfSlotsGoesBackOnSIGTERM(t *testing.T) {
	s, q, log, ids := startPrefetched(t)
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}

	done := dones(t, log)
	started := startedJobs(t, log)
	back := getAll(t, amqpBaseURL(), q)
	inQueue := map[string]amqp.Delivery{}
	for _, m := range back {
		id, _ := m.Headers["rr_id"].(string)
		if _, dup := inQueue[id]; dup {
			t.Errorf("job %s is in the queue twice", id)
		}
		inQueue[id] = m
	}
	var lost []string
	for _, id := range ids {
		_, queued := inQueue[id]
		switch {
		case done[id] > 1:
			t.Errorf("job %s finished %d times", id, done[id])
		case done[id] == 1 && queued:
			t.Errorf("job %s finished and is back in the queue", id)
		case done[id] == 0 && !queued:
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		t.Errorf("jobs neither finished nor back in the queue: %v", lost)
	}
	unstarted := 0
	for id, m := range inQueue {
		if len(started[id]) == 0 {
			unstarted++
		}
		if a, ok := m.Headers["x-attempt"]; ok && fmt.Sprint(a) != "1" {
			t.Errorf("job %s went back with x-attempt %v, want 1 as pushed", id, a)
		}
	}
	if unstarted < prefetchQos-12 {
		t.Errorf("%d unstarted jobs went back to the queue on SIGTERM, want the prefetched ones (about %d)", unstarted, prefetchQos-2)
	}
	t.Logf("after SIGTERM: %d finished, %d back in the queue (%d never started)", len(done), len(inQueue), unstarted)
}

// TestAMQPPauseHandsBackPrefetched: pausing a pipeline that holds 100
// prefetched deliveries returns the unstarted ones to the queue (the
// broker shows them ready again, none unacknowledged once the running jobs
// end); after resume every job runs exactly once, all with attempt 1.
func TestAMQPPauseHandsBackPrefetched(t *testing.T) {
	s, q, log, ids := startPrefetched(t)
	addr := amqpBaseURL()
	s.mustCLI("jobs", "pause", "default")

	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := queueReady(t, addr, q)
		st := s.stat("default")
		if st.Active == 0 && ready+int(st.Acked) == prefetchJobs {
			if ready < prefetchQos-12 {
				t.Errorf("%d jobs back in the queue after pause, want the prefetched ones (about %d)", ready, prefetchQos-2)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("paused pipeline still holds deliveries: %d ready, %+v", ready, st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	s.mustCLI("jobs", "resume", "default")
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= prefetchJobs })
	if st.Acked != prefetchJobs || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want %d acked and nothing else; got %+v", prefetchJobs, st)
	}
	done := dones(t, log)
	started := startedJobs(t, log)
	for _, id := range ids {
		if done[id] != 1 {
			t.Errorf("job %s finished %d times, want once", id, done[id])
		}
		if a := started[id]; len(a) != 1 || a[0] != 1 {
			t.Errorf("job %s started with attempts %v, want [1]", id, a)
		}
	}
	stopDrained(t, s, addr, q)
}
