package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// Helpers of the Kafka scenarios (kafka_test.go): a kfake cluster in its
// own process, a kafka pipeline config, pushing over RPC, broker-side
// inspection with kgo/kmsg, and parsing of the kjob lines behave.php writes
// (the partition and offset the worker saw in the job context).

// kfakeBin returns the kfakecmd binary, building it next to the supervisor
// binary the first time a test asks.
func kfakeBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(testEnv.bin), "kfakecmd")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	tmp := bin + ".building"
	build := exec.Command("go", "build", "-o", tmp, "./tests/kfakecmd")
	build.Dir = testEnv.repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kfakecmd: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// startKafka runs a one-broker kfake cluster with the given topics
// ("name:partitions") until the test ends and returns its address.
func startKafka(t *testing.T, topics ...string) []string {
	t.Helper()
	var args []string
	for _, tp := range topics {
		args = append(args, "-topic", tp)
	}
	cmd := exec.Command(kfakeBin(t), args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncWriter{w: new(strings.Builder)}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = stdin.Close() // EOF on stdin stops kfakecmd
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if line, _, ok := strings.Cut(out.String(), "\n"); ok {
			return strings.Split(line, ",")
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("kfakecmd exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kfakecmd printed no address within 15s: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kafkaOpts describes the kafka pipeline "default" that kafkaConfig writes.
type kafkaOpts struct {
	brokers     []string
	log         string // E2E_LOG of the workers
	workers     int
	topic       string // consumer_options.topics, comma-separated; the first is pushed to
	group       string
	instanceID  string // group_options.instance_id; "" = dynamic membership
	retryTopic  string // "" = in-place retries
	jobHeader   string // config.job_header; "" = default
	ordering    string // "" (partition) or "key"
	deadLetter  string // "" = none
	maxAttempts int
	backoff     time.Duration // initial = max, no jitter
}

func kafkaConfig(t *testing.T, o kafkaOpts) string {
	t.Helper()
	var extra []string
	if o.deadLetter != "" {
		extra = append(extra, "      dead_letter: "+o.deadLetter)
	}
	var cfgExtra []string
	if o.ordering != "" {
		cfgExtra = append(cfgExtra, "        ordering: "+o.ordering)
	}
	instance := ""
	if o.instanceID != "" {
		instance = ", instance_id: " + o.instanceID
	}
	if o.jobHeader != "" {
		cfgExtra = append(cfgExtra, "        job_header: "+o.jobHeader)
	}
	if o.retryTopic != "" {
		cfgExtra = append(cfgExtra, "        retry_topic: "+o.retryTopic)
	}
	sections := "kafka:\n  brokers: [\"" + strings.Join(o.brokers, `", "`) + "\"]\n"
	return e2eConfig(t, behaveWorker, o.log, o.workers, sections, fmt.Sprintf(`      driver: kafka
      concurrency: %d
      retry:
        max_attempts: %d
        backoff: {initial: %s, max: %s, multiplier: 1, jitter: 0}
%s
      config:
        consumer_options: {topics: [%s]}
        group_options: {group_id: %s%s}
%s
`, 2*o.workers, o.maxAttempts, o.backoff, o.backoff,
		strings.Join(extra, "\n"), o.topic, o.group, instance, strings.Join(cfgExtra, "\n")))
}

// push sends jobs to the supervisor with PushBatch, in order, 500 a call.
func (s *supervisor) push(jobs []consumer.Job) {
	s.t.Helper()
	s.rpcPush(jobs, 500)
}

// kafkaAdmin inspects the cluster from the test: committed offsets, end
// offsets, group members, topic contents.
type kafkaAdmin struct {
	t       *testing.T
	brokers []string
	cl      *kgo.Client
}

func newKafkaAdmin(t *testing.T, brokers []string) *kafkaAdmin {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &kafkaAdmin{t: t, brokers: brokers, cl: cl}
}

func (a *kafkaAdmin) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// committed returns the group's committed offset per partition of topic
// (-1 for none), failing the test on an error.
func (a *kafkaAdmin) committed(group, topic string, partitions int32) map[int32]int64 {
	a.t.Helper()
	out, err := a.fetchCommitted(group, topic, partitions)
	if err != nil {
		a.t.Fatal(err)
	}
	return out
}

// fetchCommitted is committed returning its error (for goroutines other
// than the test's).
func (a *kafkaAdmin) fetchCommitted(group, topic string, partitions int32) (map[int32]int64, error) {
	ctx, cancel := a.ctx()
	defer cancel()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, a.cl)
	if err != nil {
		return nil, fmt.Errorf("OffsetFetch: %w", err)
	}
	out := map[int32]int64{}
	for p := range partitions {
		out[p] = -1
	}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if p.ErrorCode != 0 {
				return nil, fmt.Errorf("OffsetFetch %s/%d: error code %d", tp.Topic, p.Partition, p.ErrorCode)
			}
			out[p.Partition] = p.Offset
		}
	}
	return out, nil
}

// endOffsets returns the high watermark of every partition of topic.
func (a *kafkaAdmin) endOffsets(topic string, partitions int32) map[int32]int64 {
	a.t.Helper()
	ctx, cancel := a.ctx()
	defer cancel()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, a.cl)
	if err != nil {
		a.t.Fatalf("ListOffsets: %v", err)
	}
	out := map[int32]int64{}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if p.ErrorCode != 0 {
				a.t.Fatalf("ListOffsets %s/%d: error code %d", tp.Topic, p.Partition, p.ErrorCode)
			}
			out[p.Partition] = p.Offset
		}
	}
	return out
}

// waitAllCommitted waits until the group committed the end of every
// partition of topic (an empty partition needs no commit).
func (a *kafkaAdmin) waitAllCommitted(group, topic string, partitions int32, timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		end, got := a.endOffsets(topic, partitions), a.committed(group, topic, partitions)
		all := true
		for p := range partitions {
			all = all && (got[p] == end[p] || got[p] == -1 && end[p] == 0)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("group %s committed %v, want the end offsets %v", group, got, end)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// members returns the partitions of topic assigned to each member of a
// stable group; nil while the group is rebalancing.
func (a *kafkaAdmin) members(group, topic string) map[string][]int32 {
	a.t.Helper()
	ctx, cancel := a.ctx()
	defer cancel()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, a.cl)
	if err != nil {
		a.t.Fatalf("DescribeGroups: %v", err)
	}
	if len(resp.Groups) != 1 || resp.Groups[0].State != "Stable" {
		return nil
	}
	out := map[string][]int32{}
	for _, m := range resp.Groups[0].Members {
		var as kmsg.ConsumerMemberAssignment
		if err := as.ReadFrom(m.MemberAssignment); err != nil {
			a.t.Fatalf("member %s assignment: %v", m.MemberID, err)
		}
		out[m.MemberID] = nil
		for _, tp := range as.Topics {
			if tp.Topic == topic {
				out[m.MemberID] = append(out[m.MemberID], tp.Partitions...)
			}
		}
	}
	return out
}

// produce writes records straight to the cluster (a producer that is not
// Pipevisor), waiting for the broker's acknowledgement.
func (a *kafkaAdmin) produce(recs ...*kgo.Record) {
	a.t.Helper()
	ctx, cancel := a.ctx()
	defer cancel()
	if err := a.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		a.t.Fatalf("produce: %v", err)
	}
}

// readTopic reads topic from the start until it has want records, then
// briefly more to catch any extra, and returns all it got.
func (a *kafkaAdmin) readTopic(topic string, want int) []*kgo.Record {
	a.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		a.t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		wait := time.Until(deadline)
		if len(recs) >= want {
			wait = min(wait, 500*time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if ctx.Err() != nil && len(recs) >= want {
			break
		}
	}
	return recs
}

// kjob is one "kjob" line of behave.php: a kafka-* job the worker ran,
// written before it replied.
type kjob struct {
	id        string
	attempt   int
	partition int32
	offset    int64
	pid       int
	at        time.Time
}

func kafkaJobs(t *testing.T, log string) []kjob {
	t.Helper()
	var out []kjob
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		if f[0] != "kjob" {
			continue
		}
		if len(f) != 7 {
			t.Fatalf("bad kjob line %q", l)
		}
		var j kjob
		var err error
		j.id = f[1]
		nums := make([]int64, 5)
		for i, s := range f[2:] {
			if nums[i], err = strconv.ParseInt(s, 10, 64); err != nil {
				t.Fatalf("kjob line %q: field %d: %v (did the job context lack partition/offset?)", l, i+2, err)
			}
		}
		j.attempt, j.partition, j.offset, j.pid = int(nums[0]), int32(nums[1]), nums[2], int(nums[3])
		j.at = time.UnixMilli(nums[4])
		out = append(out, j)
	}
	return out
}

// waitLog polls a worker log until cond holds.
func waitLog(t *testing.T, log string, timeout time.Duration, what string, cond func(lines []string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond(readLines(t, log)) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containsAll reports whether every key of sub is in set.
func containsAll(set, sub map[int32]bool) bool {
	for k := range sub {
		if !set[k] {
			return false
		}
	}
	return true
}
