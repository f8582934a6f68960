package tests

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

// The Kafka scenarios of issue 6 through the real supervisor binary against
// a kfake cluster in its own process (tests/kfakecmd); helpers are in
// kafka_harness_test.go. Each asserts on broker state (committed offsets,
// topic contents, group membership), on `jobs stat` and on the lines the
// behave.php worker writes before it replies, never on supervisor logs.

func TestKafkaKeysKeepPushOrderAndOnePartitionEach(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:3")
	admin := newKafkaAdmin(t, brokers)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 3, topic: "jobs",
		group: "keys", ordering: "key", maxAttempts: 3, backoff: 100 * time.Millisecond}))

	const keys, perKey = 30, 100
	var jobs []consumer.Job
	for seq := range perKey {
		for k := range keys {
			jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("k%02d-%03d", k, seq), Name: "kafka-ack",
				Pipeline: "default", Key: fmt.Sprintf("k%02d", k), Payload: []byte("x")})
		}
	}
	s.push(jobs)
	st := s.waitStat("default", 45*time.Second, func(st pipelineStat) bool { return st.Acked >= keys*perKey })
	if st.Acked != keys*perKey || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want %d acked, none retried or dead; got %+v", keys*perKey, st)
	}

	next := map[string]int{}      // key -> next sequence number expected
	partOf := map[string]int32{}  // key -> the partition its jobs came from
	lastOff := map[string]int64{} // key -> offset of its last job
	used := map[int32]bool{}      // partitions that carried jobs
	for _, j := range kafkaJobs(t, log) {
		key, seqS, _ := strings.Cut(j.id, "-")
		seq, _ := strconv.Atoi(seqS)
		if j.attempt != 1 {
			t.Fatalf("job %s ran with attempt %d; nothing should have been retried", j.id, j.attempt)
		}
		if seq != next[key] {
			t.Fatalf("key %s: job %d ran when job %d was due (not in push order)", key, seq, next[key])
		}
		if p, ok := partOf[key]; ok && p != j.partition {
			t.Fatalf("key %s: jobs on partitions %d and %d", key, p, j.partition)
		}
		if seq > 0 && j.offset <= lastOff[key] {
			t.Fatalf("key %s: job %d at offset %d after offset %d", key, seq, j.offset, lastOff[key])
		}
		partOf[key], lastOff[key], used[j.partition] = j.partition, j.offset, true
		next[key]++
	}
	for k := range keys {
		if key := fmt.Sprintf("k%02d", k); next[key] != perKey {
			t.Errorf("key %s: %d jobs ran, want %d", key, next[key], perKey)
		}
	}
	if len(used) != 3 {
		t.Errorf("30 keys landed on partitions %v, want all 3 in use", used)
	}
	admin.waitAllCommitted("keys", "jobs", 3, 10*time.Second)
}

func TestKafkaCrashedJobHoldsTheCommitAndRunsAgainAfterRestart(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:1")
	admin := newKafkaAdmin(t, brokers)
	dir := t.TempDir()
	log1, log2 := filepath.Join(dir, "run1.log"), filepath.Join(dir, "run2.log")
	opts := kafkaOpts{brokers: brokers, log: log1, workers: 2, topic: "jobs", group: "crash", ordering: "key",
		maxAttempts: 5, backoff: time.Minute} // the in-place retry is still waiting at the restart
	s1 := startSupervisor(t, kafkaConfig(t, opts))

	// Offset 0 hangs until killed; offsets 1.. have other keys and succeed.
	jobs := []consumer.Job{{ID: "crasher", Name: "kafka-hang-first", Pipeline: "default", Key: "hang", Payload: []byte("x")}}
	for i := range 20 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("ok-%02d", i), Name: "kafka-ack", Pipeline: "default",
			Key: fmt.Sprintf("key-%02d", i), Payload: []byte("x")})
	}
	s1.push(jobs)

	// Sample the committed offset from now until the first supervisor is
	// gone: it must never pass offset 0 while the crashed job is pending.
	var maxSeen struct {
		sync.Mutex
		off int64
	}
	maxSeen.off = -1
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			got, err := admin.fetchCommitted("crash", "jobs", 1)
			if err != nil {
				t.Errorf("sampling the committed offset: %v", err)
				return
			}
			if off := got[0]; off > 0 {
				maxSeen.Lock()
				maxSeen.off = max(maxSeen.off, off)
				maxSeen.Unlock()
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		sampler.Wait()
	}()

	var crashPid int
	waitLog(t, log1, 30*time.Second, "the crasher to start and ok-00..19 to finish", func([]string) bool {
		starts, dones := runs(t, log1)
		done := 0
		for id := range dones {
			if strings.HasPrefix(id, "ok-") {
				done++
			}
		}
		return starts["crasher"] == 1 && done == 20
	})
	for _, j := range kafkaJobs(t, log1) {
		if j.id == "crasher" {
			if j.offset != 0 {
				t.Fatalf("crasher at offset %d, want 0", j.offset)
			}
			crashPid = j.pid
		}
	}
	if err := syscall.Kill(crashPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s1.waitStat("default", 15*time.Second, func(st pipelineStat) bool { return st.Retried == 1 })
	// Later jobs of the partition still succeed while the crasher waits.
	var more []consumer.Job
	for i := 20; i < 25; i++ {
		more = append(more, consumer.Job{ID: fmt.Sprintf("ok-%02d", i), Name: "kafka-ack", Pipeline: "default",
			Key: fmt.Sprintf("key-%02d", i), Payload: []byte("x")})
	}
	s1.push(more)
	st := s1.waitStat("default", 15*time.Second, func(st pipelineStat) bool { return st.Acked == 25 })
	if st.Dead != 0 {
		t.Fatalf("%+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for admin.committed("crash", "jobs", 1)[0] != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("committed offset %d with 25 later jobs done, want 0 (the crashed job)", admin.committed("crash", "jobs", 1)[0])
		}
		time.Sleep(50 * time.Millisecond)
	}

	if code := s1.terminate(); code != 0 {
		t.Fatalf("first supervisor exit code %d after SIGTERM, want 0", code)
	}
	close(stopSampling)
	sampler.Wait()
	if maxSeen.off > 0 {
		t.Fatalf("the committed offset reached %d while the job at offset 0 was pending", maxSeen.off)
	}
	if got := admin.committed("crash", "jobs", 1)[0]; got != 0 {
		t.Fatalf("committed offset %d after the first supervisor stopped, want 0", got)
	}

	// A new supervisor in the same group runs the crashed job and only it.
	opts.log = log2
	s2 := startSupervisor(t, kafkaConfig(t, opts))
	s2.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	admin.waitAllCommitted("crash", "jobs", 1, 10*time.Second)
	starts1, dones1 := runs(t, log1)
	starts2, dones2 := runs(t, log2)
	if len(starts2) != 1 || starts2["crasher"] != 1 || dones2["crasher"] != 1 {
		t.Fatalf("after the restart the worker ran %v, want only the crashed job, once", starts2)
	}
	if dones1["crasher"] != 0 {
		t.Fatalf("the crashed job finished in the first run: %v", dones1)
	}
	for i := range 25 {
		id := fmt.Sprintf("ok-%02d", i)
		if starts1[id] != 1 || dones1[id] != 1 {
			t.Errorf("job %s started %d and finished %d times, want once", id, starts1[id], dones1[id])
		}
	}
}

func TestKafkaSupervisorKilledMidJobCommitsNothingPastIt(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:1")
	admin := newKafkaAdmin(t, brokers)
	dir := t.TempDir()
	log1, log2 := filepath.Join(dir, "run1.log"), filepath.Join(dir, "run2.log")
	// Static membership: the restarted supervisor takes the killed one's
	// place at once instead of after the session timeout.
	opts := kafkaOpts{brokers: brokers, log: log1, workers: 2, topic: "jobs", group: "hardkill", instanceID: "sup-1",
		ordering: "key", maxAttempts: 3, backoff: 100 * time.Millisecond}
	s1 := startSupervisor(t, kafkaConfig(t, opts))
	jobs := []consumer.Job{{ID: "crasher", Name: "kafka-hang-first", Pipeline: "default", Key: "hang"}}
	for i := range 20 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("ok-%02d", i), Name: "kafka-ack", Pipeline: "default",
			Key: fmt.Sprintf("key-%02d", i)})
	}
	s1.push(jobs)
	s1.waitStat("default", 20*time.Second, func(st pipelineStat) bool { return st.Acked == 20 })
	// The acks past the running job are committed as metadata only.
	deadline := time.Now().Add(5 * time.Second)
	for admin.committed("hardkill", "jobs", 1)[0] != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("committed %v with offset 0 running and 1..20 acked, want 0", admin.committed("hardkill", "jobs", 1))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var hung int
	for _, j := range kafkaJobs(t, log1) {
		if j.id == "crasher" {
			hung = j.pid
		}
	}
	// The supervisor dies without a word; its hung worker is killed too.
	if err := s1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s1.wait(10 * time.Second)
	if err := syscall.Kill(hung, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatal(err)
	}
	if got := admin.committed("hardkill", "jobs", 1)[0]; got != 0 {
		t.Fatalf("committed offset %d after the supervisor died with offset 0 unsettled, want 0", got)
	}

	opts.log = log2
	s2 := startSupervisor(t, kafkaConfig(t, opts))
	s2.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	admin.waitAllCommitted("hardkill", "jobs", 1, 10*time.Second)
	starts2, dones2 := runs(t, log2)
	if len(starts2) != 1 || dones2["crasher"] != 1 {
		t.Fatalf("after the restart the worker ran %v, want only the job that was running at the kill", starts2)
	}
}

func TestKafkaRetryWithDelayKeepsOrderAndDeadLettersKeepHeaders(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:1", "jobs-dlq:1")
	admin := newKafkaAdmin(t, brokers)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 2, topic: "jobs",
		group: "retry", deadLetter: "jobs-dlq", maxAttempts: 2, backoff: 100 * time.Millisecond}))

	job := func(id, name, key string) consumer.Job {
		return consumer.Job{ID: id, Name: name, Pipeline: "default", Key: key, Payload: []byte("payload of " + id)}
	}
	dead := job("dead-1", "always-fail", "dk")
	dead.Headers = map[string][]string{"x-trace": {"t-1", "t-2"}, "x-tenant": {"acme"}}
	s.push([]consumer.Job{
		job("r1", "kafka-ack", "order"), job("r2", "kafka-ack", "order"), job("r3", "kafka-nack-delay", "order"),
		job("r4", "kafka-ack", "order"), job("r5", "kafka-ack", "order"), dead, job("after", "kafka-ack", "other"),
	})
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 6 && st.Dead == 1 })
	if st.Retried != 2 {
		t.Fatalf("want 2 retried (r3 once, dead-1 once before it died); got %+v", st)
	}

	// One partition, ordering by partition: the retried job holds every
	// later job back until its second attempt, 1s later, has finished.
	var order []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			order = append(order, f[1]+"#"+f[2])
		}
	}
	want := "r1#1 r2#1 r3#1 r3#2 r4#1 r5#1 dead-1#1 dead-1#2 after#1"
	if got := strings.Join(order, " "); got != want {
		t.Fatalf("run order\n got %s\nwant %s", got, want)
	}
	var first, second time.Time
	for _, j := range kafkaJobs(t, log) {
		if j.id == "r3" && j.attempt == 1 {
			first = j.at
		}
		if j.id == "r3" && j.attempt == 2 {
			second = j.at
		}
	}
	if gap := second.Sub(first); gap < 900*time.Millisecond {
		t.Fatalf("r3 ran again %s after asking for a 1s delay", gap)
	}

	recs := admin.readTopic("jobs-dlq", 1)
	if len(recs) != 1 {
		t.Fatalf("%d records on the dead-letter topic, want 1", len(recs))
	}
	r := recs[0]
	hdr := map[string][]string{}
	for _, h := range r.Headers {
		hdr[h.Key] = append(hdr[h.Key], string(h.Value))
	}
	if string(r.Value) != "payload of dead-1" || string(r.Key) != "dk" {
		t.Errorf("dead-letter record key %q value %q, want the job's key and payload", r.Key, r.Value)
	}
	if !slices.Equal(hdr["x-trace"], []string{"t-1", "t-2"}) || !slices.Equal(hdr["x-tenant"], []string{"acme"}) {
		t.Errorf("dead-letter record lost the job's headers: %v", hdr)
	}
	if !slices.Equal(hdr["rr_id"], []string{"dead-1"}) || !slices.Equal(hdr["rr_job"], []string{"always-fail"}) {
		t.Errorf("dead-letter record lacks the job id and name: %v", hdr)
	}
	admin.waitAllCommitted("retry", "jobs", 1, 10*time.Second)
}

func TestKafkaKeyOrderingRetryHoldsOnlyItsKey(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:1")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 2, topic: "jobs",
		group: "keyretry", ordering: "key", maxAttempts: 3, backoff: 100 * time.Millisecond}))

	jobs := []consumer.Job{
		{ID: "a1", Name: "kafka-nack-delay", Pipeline: "default", Key: "A"},
		{ID: "a2", Name: "kafka-ack", Pipeline: "default", Key: "A"},
	}
	for i := 1; i <= 5; i++ {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("b%d", i), Name: "kafka-ack", Pipeline: "default", Key: "B"})
	}
	s.push(jobs)
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 7 })

	// Key A waits for a1's retry 1s later; key B, on the same partition,
	// does not wait for it.
	pos := map[string]int{}
	var runsOf []string
	for i, j := range kafkaJobs(t, log) {
		k := fmt.Sprintf("%s#%d", j.id, j.attempt)
		pos[k] = i
		runsOf = append(runsOf, k)
	}
	if len(runsOf) != 8 {
		t.Fatalf("runs %v, want a1 twice and the other 6 once", runsOf)
	}
	if !(pos["a1#1"] < pos["a1#2"] && pos["a1#2"] < pos["a2#1"]) {
		t.Errorf("key A ran out of order: %v", runsOf)
	}
	for i := 1; i <= 5; i++ {
		b := fmt.Sprintf("b%d#1", i)
		if pos[b] > pos["a1#2"] || (i > 1 && pos[b] < pos[fmt.Sprintf("b%d#1", i-1)]) {
			t.Errorf("key B waited for key A's retry or ran out of order: %v", runsOf)
		}
	}
}

func TestKafkaRequeueHeadersNackRedeliveryAndDelayedPush(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:2")
	admin := newKafkaAdmin(t, brokers)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 2, topic: "jobs",
		group: "requeue", ordering: "key", maxAttempts: 3, backoff: 100 * time.Millisecond}))

	pushed := time.Now()
	s.push([]consumer.Job{
		{ID: "rq", Name: "requeue-once", Pipeline: "default", Key: "rq"},
		{ID: "nk", Name: "nack-once", Pipeline: "default", Key: "nk"},
		{ID: "late", Name: "kafka-ack", Pipeline: "default", Key: "late", Delay: 2 * time.Second},
	})
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 3 })
	if st.Requeued != 1 || st.Retried != 1 || st.Dead != 0 {
		t.Fatalf("want 1 requeued, 1 retried, 0 dead; got %+v", st)
	}
	var replies []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "done" {
			replies = append(replies, f[1]+":"+f[2]+":"+f[3])
		}
	}
	slices.Sort(replies)
	want := "late:1:ack nk:1:nack nk:2:ack rq:1:requeue rq:2:ack:requeued"
	if got := strings.Join(replies, " "); got != want {
		t.Fatalf("worker replies\n got %s\nwant %s", got, want)
	}
	for _, j := range kafkaJobs(t, log) {
		if j.id == "late" && j.at.Sub(pushed) < 1900*time.Millisecond {
			t.Fatalf("a job pushed with a 2s delay ran after %s", j.at.Sub(pushed))
		}
	}
	admin.waitAllCommitted("requeue", "jobs", 2, 10*time.Second)
}

func TestKafkaRetryTopicCarriesTheAttempt(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:1", "jobs-retry:1")
	admin := newKafkaAdmin(t, brokers)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 2, topic: "jobs, jobs-retry",
		group: "retrytopic", retryTopic: "jobs-retry", maxAttempts: 3, backoff: 100 * time.Millisecond}))

	s.push([]consumer.Job{
		{ID: "rt", Name: "kafka-nack-delay", Pipeline: "default", Key: "k", Headers: map[string][]string{"x-tenant": {"acme"}}},
		{ID: "next", Name: "kafka-ack", Pipeline: "default", Key: "k"},
	})
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 2 })
	if st.Retried != 1 || st.Dead != 0 {
		t.Fatalf("want 1 retried; got %+v", st)
	}
	var first, second time.Time
	for _, j := range kafkaJobs(t, log) {
		switch {
		case j.id == "rt" && j.attempt == 1:
			first = j.at
		case j.id == "rt" && j.attempt == 2:
			second = j.at
		}
	}
	if first.IsZero() || second.IsZero() {
		t.Fatalf("the retried job did not run as attempt 1 then 2: %v", kafkaJobs(t, log))
	}
	if gap := second.Sub(first); gap < 900*time.Millisecond {
		t.Fatalf("retry copy ran %s after asking for a 1s delay", gap)
	}
	recs := admin.readTopic("jobs-retry", 1)
	if len(recs) != 1 {
		t.Fatalf("%d records on the retry topic, want 1", len(recs))
	}
	hdr := map[string][]string{}
	for _, h := range recs[0].Headers {
		hdr[h.Key] = append(hdr[h.Key], string(h.Value))
	}
	if !slices.Equal(hdr["rr_id"], []string{"rt"}) || !slices.Equal(hdr["x-tenant"], []string{"acme"}) {
		t.Errorf("retry copy headers %v, want the job id and its headers", hdr)
	}
	admin.waitAllCommitted("retrytopic", "jobs", 1, 10*time.Second)
	admin.waitAllCommitted("retrytopic", "jobs-retry", 1, 10*time.Second)
}

func TestKafkaPauseKeepsJobsOnTheBrokerAndResumeDrains(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:2")
	admin := newKafkaAdmin(t, brokers)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 2, topic: "jobs",
		group: "pause", maxAttempts: 3, backoff: 100 * time.Millisecond}))

	s.push([]consumer.Job{{ID: "first", Name: "kafka-ack", Pipeline: "default"}})
	s.waitStat("default", 15*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	s.mustCLI("jobs", "pause", "default")
	// 20 jobs with one key, through the CLI.
	s.mustCLI("push", "--pipeline", "default", "--job", "kafka-ack", "--key", "hot", "--count", "20")
	st := s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return st.Ready == 20 })
	time.Sleep(500 * time.Millisecond)
	if st = s.stat("default"); st.Acked != 1 || st.Active != 0 || st.Consuming {
		t.Fatalf("while paused want the 20 jobs ready, none run, not consuming; got %+v", st)
	}
	end, got := admin.endOffsets("jobs", 2), admin.committed("pause", "jobs", 2)
	if end[0]+end[1]-max(got[0], 0)-max(got[1], 0) != 20 {
		t.Fatalf("while paused: end offsets %v, committed %v; want the 20 new jobs uncommitted", end, got)
	}
	s.mustCLI("jobs", "resume", "default")
	st = s.waitStat("default", 15*time.Second, func(st pipelineStat) bool { return st.Acked == 21 })
	if !st.Consuming || st.Ready != 0 {
		t.Fatalf("after resume: %+v", st)
	}
	admin.waitAllCommitted("pause", "jobs", 2, 10*time.Second)
	hot := kafkaJobs(t, log)[1:]
	for i, j := range hot {
		if j.partition != hot[0].partition || (i > 0 && j.offset != hot[i-1].offset+1) {
			t.Fatalf("the 20 jobs of key hot ran as %+v, want one partition in offset order", hot)
		}
	}
}

func TestKafkaRecordsFromOtherProducersRunAsJobs(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "jobs:1")
	admin := newKafkaAdmin(t, brokers)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, kafkaConfig(t, kafkaOpts{brokers: brokers, log: log, workers: 1, topic: "jobs",
		group: "foreign", jobHeader: "type", maxAttempts: 3, backoff: 100 * time.Millisecond}))

	hdr := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	admin.produce(
		// A plain producer naming the job in the configured header.
		&kgo.Record{Topic: "jobs", Value: []byte("a"), Headers: []kgo.RecordHeader{hdr("type", "kafka-ack")}},
		// No header at all: the job is named after the topic.
		&kgo.Record{Topic: "jobs", Value: []byte("b")},
		// RoadRunner's kafka driver: rr_job, no rr_id; the key is the id.
		&kgo.Record{Topic: "jobs", Key: []byte("rr-key-1"), Value: []byte("c"), Headers: []kgo.RecordHeader{hdr("rr_job", "kafka-ack")}},
	)
	s.waitStat("default", 20*time.Second, func(st pipelineStat) bool { return st.Acked == 3 })
	var got []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "start" {
			got = append(got, f[1]+" "+f[4])
		}
	}
	want := "jobs/0/0 kafka-ack, jobs/0/1 jobs, rr-key-1 kafka-ack"
	if strings.Join(got, ", ") != want {
		t.Fatalf("worker ran %q, want %q (id and job name)", strings.Join(got, ", "), want)
	}
	admin.waitAllCommitted("foreign", "jobs", 1, 10*time.Second)
}
