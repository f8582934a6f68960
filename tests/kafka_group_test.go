package tests

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Kafka consumer groups through the real supervisor: two supervisor
// processes in one group (see kafka_test.go for the other scenarios).

func TestKafkaTwoSupervisorsSplitPartitionsAndOneTakesOver(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:4")
	admin := newKafkaAdmin(t, brokers)
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	opts := kafkaOpts{brokers: brokers, workers: 2, topic: "jobs", group: "pair", maxAttempts: 3, backoff: 100 * time.Millisecond}
	opts.log = logA
	a := startSupervisor(t, kafkaConfig(t, opts))
	opts.log = logB
	b := startSupervisor(t, kafkaConfig(t, opts))

	// Both members hold partitions before anything is pushed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := admin.members("pair", "jobs")
		if len(m) == 2 {
			n, both := 0, true
			for _, ps := range m {
				n += len(ps)
				both = both && len(ps) > 0
			}
			if both && n == 4 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group never split the 4 partitions between 2 members: %v", m)
		}
		time.Sleep(100 * time.Millisecond)
	}

	const n = 600
	var jobs []consumer.Job
	for i := range n {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("j-%03d", i), Name: "kafka-slow", Pipeline: "default", Payload: []byte("10")})
	}
	a.push(jobs)
	waitLog(t, logA, 30*time.Second, "each supervisor to run 20 jobs", func([]string) bool {
		return len(kafkaJobs(t, logA)) >= 20 && len(kafkaJobs(t, logB)) >= 20
	})
	beforeB := len(kafkaJobs(t, logB))
	if code := a.terminate(); code != 0 {
		t.Fatalf("stopped supervisor exit code %d, want 0", code)
	}
	jobsA := kafkaJobs(t, logA)
	b.waitStat("default", 40*time.Second, func(st pipelineStat) bool { return int(st.Acked)+len(jobsA) >= n })
	admin.waitAllCommitted("pair", "jobs", 4, 10*time.Second)

	partsA, partsB, partsBAfter := map[int32]bool{}, map[int32]bool{}, map[int32]bool{}
	for _, j := range jobsA {
		partsA[j.partition] = true
	}
	jobsB := kafkaJobs(t, logB)
	for i, j := range jobsB {
		if i < beforeB {
			partsB[j.partition] = true
		} else {
			partsBAfter[j.partition] = true
		}
	}
	for p := range partsA {
		if partsB[p] {
			t.Errorf("partition %d ran on both supervisors while both were up (A %v, B %v)", p, partsA, partsB)
		}
	}
	if len(partsA) == 0 || len(partsB) == 0 || len(partsA)+len(partsB) != 4 || !containsAll(partsBAfter, partsA) {
		t.Errorf("partitions: A ran %v, B ran %v before and %v after A stopped", partsA, partsB, partsBAfter)
	}
	count := map[string]int{}
	for _, j := range append(jobsA, jobsB...) {
		count[j.id]++
	}
	for i := range n {
		id := fmt.Sprintf("j-%03d", i)
		if count[id] != 1 {
			t.Errorf("job %s ran %d times, want once", id, count[id])
		}
	}
	if m := admin.members("pair", "jobs"); len(m) != 1 {
		t.Errorf("group members after one supervisor stopped: %v, want 1", m)
	}
}

func TestKafkaSupervisorJoiningMidStreamLosesNoJob(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:2")
	admin := newKafkaAdmin(t, brokers)
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	opts := kafkaOpts{brokers: brokers, workers: 2, topic: "jobs", group: "join", maxAttempts: 3, backoff: 100 * time.Millisecond}
	opts.log = logA
	a := startSupervisor(t, kafkaConfig(t, opts))
	const n = 40
	var jobs []consumer.Job
	for i := range n {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("j-%02d", i), Name: "kafka-slow", Pipeline: "default", Payload: []byte("250")})
	}
	a.push(jobs)
	waitLog(t, logA, 20*time.Second, "the first supervisor to run 2 jobs", func([]string) bool { return len(kafkaJobs(t, logA)) >= 2 })
	opts.log = logB
	b := startSupervisor(t, kafkaConfig(t, opts))
	admin.waitAllCommitted("join", "jobs", 2, 40*time.Second)

	// Each id ran exactly once: the jobs running on a partition when it
	// was revoked finish (and are committed) on A before B gets it.
	ja, jb := kafkaJobs(t, logA), kafkaJobs(t, logB)
	if len(jb) == 0 {
		t.Fatalf("the joining supervisor ran nothing (A ran %d)", len(ja))
	}
	count := map[string]int{}
	partsB := map[int32]bool{}
	for _, j := range ja {
		count[j.id]++
	}
	for _, j := range jb {
		count[j.id]++
		partsB[j.partition] = true
	}
	twice := 0
	for i := range n {
		switch c := count[fmt.Sprintf("j-%02d", i)]; {
		case c == 0:
			t.Errorf("job j-%02d never ran", i)
		case c == 2:
			twice++
		case c > 2:
			t.Errorf("job j-%02d ran %d times", i, c)
		}
	}
	t.Logf("A ran %d, B ran %d on partitions %v; %d ran twice", len(ja), len(jb), partsB, twice)
	if twice > 0 {
		t.Errorf("%d jobs ran twice; want none (a rebalance waits for the jobs running on the partitions it moves)", twice)
	}
	if sa, sb := a.stat("default"), b.stat("default"); sa.Acked+sb.Acked != n {
		t.Errorf("acked %d + %d, want %d in all (a job whose partition moved is settled by its new owner only)", sa.Acked, sb.Acked, n)
	}
}

// TestKafkaRebalanceDoesNotStartARunningJobTwice: a second supervisor
// joins while the first runs a slow job on each partition. The partition
// that moves is handed over only after its running job finished on the
// first supervisor: no job starts on both, and every job runs once.
func TestKafkaRebalanceDoesNotStartARunningJobTwice(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:2")
	admin := newKafkaAdmin(t, brokers)
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	opts := kafkaOpts{brokers: brokers, workers: 2, topic: "jobs", group: "overlap", maxAttempts: 3, backoff: 100 * time.Millisecond}
	opts.log = logA
	a := startSupervisor(t, kafkaConfig(t, opts))
	const n = 8
	var jobs []consumer.Job
	for i := range n {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("j-%02d", i), Name: "kafka-slow", Pipeline: "default", Payload: []byte("1500")})
	}
	a.push(jobs)
	waitLog(t, logA, 20*time.Second, "2 starts on A", func([]string) bool { s, _ := runs(t, logA); return len(s) >= 2 })
	opts.log = logB
	b := startSupervisor(t, kafkaConfig(t, opts))
	waitLog(t, logB, 30*time.Second, "a start on B", func([]string) bool { s, _ := runs(t, logB); return len(s) >= 1 })
	admin.waitAllCommitted("overlap", "jobs", 2, 40*time.Second)

	sa, da := runs(t, logA)
	sb, db := runs(t, logB)
	for id := range sb {
		if sa[id] > 0 {
			t.Errorf("job %s started on A (%d starts, %d done) and on B", id, sa[id], da[id])
		}
	}
	for i := range n {
		id := fmt.Sprintf("j-%02d", i)
		if sa[id]+sb[id] != 1 || da[id]+db[id] != 1 {
			t.Errorf("job %s: started %d+%d, done %d+%d times on A+B, want once", id, sa[id], sb[id], da[id], db[id])
		}
	}
	if sa, sb := a.stat("default"), b.stat("default"); sa.Acked+sb.Acked != n {
		t.Errorf("acked %d + %d, want %d", sa.Acked, sb.Acked, n)
	}
}
