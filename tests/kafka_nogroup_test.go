package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// noGroupConfig is a RoadRunner-style kafka pipeline without group_options:
// the supervisor reads every partition of topic directly, from the start.
func noGroupConfig(t *testing.T, brokers []string, log, topic string) string {
	t.Helper()
	sections := "kafka:\n  brokers: [\"" + strings.Join(brokers, `", "`) + "\"]\n  ping:\n    timeout: 5s\n"
	return e2eConfig(t, behaveWorker, log, 4, sections, fmt.Sprintf(`      driver: kafka
      config:
        priority: 1
        auto_create_topics_enable: false
        producer_options:
          required_acks: LeaderAck
          compression_codec: snappy
          disable_idempotent: true
        consumer_options:
          topics: [%q]
          consumer_offset:
            type: AtStart
`, topic))
}

// groups lists the consumer groups the cluster knows.
func (a *kafkaAdmin) groups() []string {
	a.t.Helper()
	ctx, cancel := a.ctx()
	defer cancel()
	resp, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, a.cl)
	if err != nil {
		a.t.Fatalf("ListGroups: %v", err)
	}
	var out []string
	for _, g := range resp.Groups {
		out = append(out, g.Group)
	}
	return out
}

// TestKafkaWithoutGroupAcksEveryJobOnce: a pipeline without group_options
// consumes all partitions of its topic; every pushed job is acked exactly
// once (a job the worker nacks with a delay runs once more, then is
// acked), no consumer group is created, and a restarted supervisor reads
// the topic again from consumer_offset (RoadRunner's behaviour: nothing is
// committed without a group).
func TestKafkaWithoutGroupAcksEveryJobOnce(t *testing.T) {
	requireTool(t, "php")
	brokers := startKafka(t, "direct:4")
	admin := newKafkaAdmin(t, brokers)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startConsuming(t, noGroupConfig(t, brokers, log, "direct"))

	const acks, nacks = 200, 10
	var jobs []consumer.Job
	for i := range acks {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("a%03d", i), Name: "kafka-ack", Pipeline: "default", Payload: []byte("x")})
	}
	for i := range nacks {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("n%02d", i), Name: "kafka-nack-delay", Pipeline: "default", Payload: []byte("x")})
	}
	s.push(jobs)
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= acks+nacks })
	if st.Acked != acks+nacks || st.Retried != nacks || st.Dead != 0 {
		t.Fatalf("want %d acked, %d retried, none dead; got %+v", acks+nacks, nacks, st)
	}

	replies := map[string][]string{} // id -> replies in order
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "done" {
			replies[f[1]] = append(replies[f[1]], f[3])
		}
	}
	for _, j := range jobs {
		want := "ack"
		if j.Name == "kafka-nack-delay" {
			want = "nack ack"
		}
		if got := strings.Join(replies[j.ID], " "); got != want {
			t.Errorf("job %s replied %q, want %q", j.ID, got, want)
		}
	}
	if len(replies) != len(jobs) {
		t.Errorf("%d job ids ran, want %d", len(replies), len(jobs))
	}
	used := map[int32]bool{}
	for _, j := range kafkaJobs(t, log) {
		used[j.partition] = true
	}
	if len(used) != 4 {
		t.Errorf("jobs came from partitions %v, want all 4", used)
	}
	if g := admin.groups(); len(g) != 0 {
		t.Errorf("consumer groups %v, want none", g)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("supervisor exit %d: %s", code, s.output())
	}

	// Nothing was committed: the next supervisor runs the jobs again.
	log2 := filepath.Join(t.TempDir(), "again.log")
	s2 := startConsuming(t, noGroupConfig(t, brokers, log2, "direct"))
	s2.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked >= acks+nacks })
	if again := dones(t, log2); len(again) != len(jobs) {
		t.Fatalf("after a restart %d job ids ran again, want all %d", len(again), len(jobs))
	}
}
