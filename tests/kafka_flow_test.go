package tests

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Kafka flow control through the real supervisor: a busy partition must
// never wait for the long poll of an idle one.

// TestKafkaBusyPartitionDoesNotStall: 3000 jobs with one key (one
// partition of two) and two workers. The busy partition's local buffer
// fills again and again; the jobs must flow without the multi-second
// stalls (the broker's fetch wait) a pause/resume of the partition caused.
func TestKafkaBusyPartitionDoesNotStall(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:2")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 2, topic: "jobs",
		group: "busy", maxAttempts: 3, backoff: 100 * time.Millisecond}))
	const n = 3000
	jobs := make([]consumer.Job, n)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("h-%04d", i), Name: "echo", Pipeline: "default", Key: "hot"}
	}
	s.push(jobs)

	const stallLimit = 900 * time.Millisecond
	start := time.Now()
	last, lastAt, longest := uint64(0), time.Now(), time.Duration(0)
	for {
		st := s.stat("default")
		now := time.Now()
		if st.Acked != last {
			last, lastAt = st.Acked, now
		}
		longest = max(longest, now.Sub(lastAt))
		if st.Acked >= n {
			break
		}
		if longest > 3*stallLimit || now.Sub(start) > 60*time.Second {
			t.Fatalf("acked %d of %d; no progress for %s (%+v)", st.Acked, n, longest, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d jobs on one partition in %s; longest time without an ack %s", n, time.Since(start), longest)
	if longest > stallLimit {
		t.Errorf("the busy partition made no progress for %s (limit %s)", longest, stallLimit)
	}
}
