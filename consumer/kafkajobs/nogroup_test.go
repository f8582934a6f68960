package kafkajobs

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/consumertest"
)

// noGroupConfig consumes topic without a consumer group.
func noGroupConfig(topic string) Config {
	return Config{ConsumerOptions: ConsumerOptions{Topics: []string{topic}}}
}

// publishNumbered publishes n jobs with ids 0..n-1, each its own key so
// that they spread over the partitions.
func publishNumbered(t *testing.T, d *Driver, n int) {
	t.Helper()
	jobs := make([]consumer.Job, n)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: strconv.Itoa(i), Name: "Numbered", Payload: []byte("p" + strconv.Itoa(i))}
	}
	publish(t, d, jobs...)
}

// TestNoGroupSettlesByTheOutcomeTable: a pipeline without group_options
// reads every partition of its topic; Ack drops a job, Retry hands the same
// record out again (attempt 2) in its place, Dead produces a copy to the
// dead-letter topic and the job never comes back. Nothing is committed, so
// a new driver on the same pipeline reads every record again from the
// start offset.
func TestNoGroupSettlesByTheOutcomeTable(t *testing.T) {
	const n = 24
	c := newCluster(t, 4, "nogroup", "nogroup-dlq")
	d := open(t, c, noGroupConfig("nogroup"), "nogroup-dlq")
	publishNumbered(t, d, n)

	attempts := map[string][]int{}
	partitions := map[int32]bool{}
	var dead []string
	for done := 0; done < n; {
		dl := receive(t, d)
		attempts[dl.ID] = append(attempts[dl.ID], dl.Attempt)
		partitions[PositionOf(dl).Partition] = true
		id, _ := strconv.Atoi(dl.ID)
		switch {
		case id%4 == 0 && dl.Attempt == 1:
			settle(t, dl, consumer.Outcome{Action: consumer.Retry})
		case id%4 == 1:
			settle(t, dl, consumer.Outcome{Action: consumer.Dead, Reason: "bad input"})
			dead = append(dead, dl.ID)
			done++
		default:
			settle(t, dl, consumer.Outcome{Action: consumer.Ack})
			done++
		}
	}
	receiveNone(t, d, 500*time.Millisecond)
	if len(partitions) < 2 {
		t.Fatalf("jobs came from partitions %v, want several", partitions)
	}
	for i := range n {
		id := strconv.Itoa(i)
		want := []int{1}
		if i%4 == 0 {
			want = []int{1, 2}
		}
		if !slices.Equal(attempts[id], want) {
			t.Errorf("job %s ran with attempts %v, want %v", id, attempts[id], want)
		}
	}
	copies := consumeAll(t, c, "nogroup-dlq", len(dead))
	var got []string
	for _, r := range copies {
		v, _ := header(r, hdrID)
		got = append(got, v)
	}
	slices.Sort(got)
	slices.Sort(dead)
	if !slices.Equal(got, dead) {
		t.Fatalf("dead-letter copies of %v, want %v", got, dead)
	}
	st, err := d.Stat(testCtx(t, 5*time.Second))
	if err != nil || st.Active != 0 || st.Ready != 0 || st.Queue != "nogroup" {
		t.Fatalf("Stat = %+v, %v; want nothing active or ready on queue nogroup", st, err)
	}

	// Nothing was committed: a restarted pipeline reads every job again.
	if err := d.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	again := open(t, c, noGroupConfig("nogroup"), "")
	seen := map[string]bool{}
	for len(seen) < n {
		dl := receive(t, again)
		seen[dl.ID] = true
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
}

// TestNoGroupRetryKeepsPartitionOrder: a retried record of a partition
// runs again before the records behind it.
func TestNoGroupRetryKeepsPartitionOrder(t *testing.T) {
	c := newCluster(t, 1, "ordered")
	d := open(t, c, noGroupConfig("ordered"), "")
	publishNumbered(t, d, 3)
	var order []string
	for len(order) < 4 {
		dl := receive(t, d)
		order = append(order, fmt.Sprintf("%s/%d", dl.ID, dl.Attempt))
		if dl.ID == "0" && dl.Attempt == 1 {
			settle(t, dl, consumer.Outcome{Action: consumer.Retry, Delay: 50 * time.Millisecond})
			continue
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	if want := []string{"0/1", "0/2", "1/1", "2/1"}; !slices.Equal(order, want) {
		t.Fatalf("ran %v, want %v", order, want)
	}
}

// produceAt writes n records with the given timestamp straight to
// topic[partition] (no rr_* headers: their ids are topic/partition/offset).
func produceAt(t *testing.T, c *kfake.Cluster, topic string, partition int32, n int, ts time.Time) {
	t.Helper()
	cl := rawClient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for range n {
		r := &kgo.Record{Topic: topic, Partition: partition, Value: []byte("x"), Timestamp: ts}
		if err := cl.ProduceSync(testCtx(t, 5*time.Second), r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// receiveIDs takes n deliveries, acks them and returns their ids sorted.
func receiveIDs(t *testing.T, d *Driver, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		dl := receive(t, d)
		ids = append(ids, dl.ID)
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	slices.Sort(ids)
	return ids
}

// TestConsumePartitionsStartOffsets: consume_partitions reads only the
// listed partitions, each from where its offset type says.
func TestConsumePartitionsStartOffsets(t *testing.T) {
	c := newCluster(t, 3, "parts")
	old := time.Now().Add(-time.Hour)
	recent := time.Now()
	produceAt(t, c, "parts", 0, 5, old)
	produceAt(t, c, "parts", 1, 3, old)
	produceAt(t, c, "parts", 1, 2, recent)
	produceAt(t, c, "parts", 2, 4, old)

	cfg := Config{ConsumerOptions: ConsumerOptions{ConsumePartitions: map[string]PartitionOffsets{
		"parts": {
			0: {Type: OffsetAt, Value: 3},
			1: {Type: OffsetAfterMilli, Value: recent.Add(-time.Millisecond).UnixMilli()},
			// partition 2 is not listed: never read
		},
	}}}
	d := open(t, c, cfg, "")
	got := receiveIDs(t, d, 4)
	want := []string{"parts/0/3", "parts/0/4", "parts/1/3", "parts/1/4"}
	if !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	receiveNone(t, d, 300*time.Millisecond)
	st, _ := d.Stat(testCtx(t, time.Second))
	if st.Queue != "parts" {
		t.Fatalf("Stat.Queue = %q, want parts", st.Queue)
	}
}

// TestConsumerOffsetWithoutGroup: consumer_offset is where every partition
// of the topics starts without a group.
func TestConsumerOffsetWithoutGroup(t *testing.T) {
	for _, tc := range []struct {
		offset Offset
		want   []string
	}{
		{Offset{Type: OffsetAt, Value: 2}, []string{"start/0/2", "start/0/3"}},
		{Offset{Type: OffsetRelative, Value: -1}, []string{"start/0/3"}},
		{Offset{Type: OffsetAtStart}, []string{"start/0/0", "start/0/1", "start/0/2", "start/0/3"}},
	} {
		t.Run(tc.offset.Type, func(t *testing.T) {
			c := newCluster(t, 1, "start")
			produceAt(t, c, "start", 0, 4, time.Now())
			cfg := noGroupConfig("start")
			cfg.ConsumerOptions.ConsumerOffset = tc.offset
			d := open(t, c, cfg, "")
			if got := receiveIDs(t, d, len(tc.want)); !slices.Equal(got, tc.want) {
				t.Fatalf("read %v, want %v", got, tc.want)
			}
			receiveNone(t, d, 200*time.Millisecond)
		})
	}
}

// TestConsumerOffsetAtEndWithoutGroup: AtEnd skips what is there and
// reads what comes after the start offset was resolved. Jobs are published
// until one is read (those published before the offset was resolved are
// skipped too); the records written before the driver started never are.
func TestConsumerOffsetAtEndWithoutGroup(t *testing.T) {
	c := newCluster(t, 1, "end")
	produceAt(t, c, "end", 0, 3, time.Now())
	cfg := noGroupConfig("end")
	cfg.ConsumerOptions.ConsumerOffset = Offset{Type: OffsetAtEnd}
	d := open(t, c, cfg, "")
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		publish(t, d, consumer.Job{ID: "late-" + strconv.Itoa(i), Name: "Late"})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		dl, err := d.Receive(ctx)
		cancel()
		if err == nil {
			if !strings.HasPrefix(dl.ID, "late-") {
				t.Fatalf("read %s, a record written before the start", dl.ID)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing read after %d publishes: %v", i+1, err)
		}
	}
}

// TestLegacyTopicConsumesAndPublishes: RoadRunner 2.x's topic key is the
// pipeline's topic, consumed (without a group) and published to.
func TestLegacyTopicConsumesAndPublishes(t *testing.T) {
	c := newCluster(t, 2, "legacy")
	d := open(t, c, Config{Topic: "legacy"}, "")
	publishNumbered(t, d, 4)
	if got := receiveIDs(t, d, 4); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Fatalf("read %v", got)
	}
}

// TestLegacyPartitionsOffsets: 2.x partitions_offsets of topic pick the
// partitions and start offsets (-2 oldest).
func TestLegacyPartitionsOffsets(t *testing.T) {
	c := newCluster(t, 2, "legacy-po")
	produceAt(t, c, "legacy-po", 0, 2, time.Now())
	produceAt(t, c, "legacy-po", 1, 3, time.Now())
	cfg := Config{Topic: "legacy-po", Legacy: Legacy{PartitionsOffsets: PartitionStarts{1: 1}}}
	d := open(t, c, cfg, "")
	if got := receiveIDs(t, d, 2); !slices.Equal(got, []string{"legacy-po/1/1", "legacy-po/1/2"}) {
		t.Fatalf("read %v", got)
	}
	receiveNone(t, d, 200*time.Millisecond)
}

// TestLegacyPartitionsOffsetsInAGroup: in a group, 2.x partitions_offsets
// is ignored with a warning (the group assigns partitions), not an error.
func TestLegacyPartitionsOffsetsInAGroup(t *testing.T) {
	c := Config{Topic: "t", Legacy: Legacy{GroupID: "g", PartitionsOffsets: PartitionStarts{0: -2}}}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.ConsumerOptions.ConsumePartitions != nil || c.GroupOptions.GroupID != "g" {
		t.Fatalf("folded into %+v", c)
	}
	if got := fieldKeys(t, c.Warnings()); !slices.Equal(got, []string{"partitions_offsets"}) {
		t.Fatalf("warnings %q", got)
	}
}

// TestConformanceWithoutGroup runs the driver conformance suite on
// pipelines without a consumer group. Reopen is not offered: without a
// group nothing is committed, so a reopened consumer reads acked jobs
// again (RoadRunner's behaviour, see TestNoGroupSettlesByTheOutcomeTable).
func TestConformanceWithoutGroup(t *testing.T) {
	c := newCluster(t, 1)
	admin := rawClient(t, c)
	features := consumertest.Features{
		Delay:               true,
		KeyOrder:            true,
		RetryPosition:       true,
		AttemptCount:        true,
		ReleaseKeepsAttempt: true,
		AutoAck:             true,
	}
	consumertest.Run(t, features, func(t *testing.T) consumertest.Pair {
		id := rand.Text()[:10]
		topic, dlq := "n-"+id, "n-"+id+"-dlq"
		createTopics(t, admin, 1, topic, dlq)
		cfg := noGroupConfig(topic)
		if strings.HasSuffix(t.Name(), "/ReceiveReady") {
			cfg.Ordering = OrderKey // as in TestConformance
		}
		d := open(t, c, cfg, dlq)
		return consumertest.Pair{
			Consumer:  d,
			Publisher: d,
			DeadIDs: func(ctx context.Context) ([]string, error) {
				return recordIDs(ctx, c, dlq)
			},
		}
	})
}
