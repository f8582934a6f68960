package kafkajobs

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/consumertest"
)

// createTopics creates topics with n partitions each.
func createTopics(t testing.TB, cl *kgo.Client, n int32, topics ...string) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	for _, name := range topics {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic = name
		rt.NumPartitions = n
		rt.ReplicationFactor = 1
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(testCtx(t, 5*time.Second), cl)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			t.Fatalf("create topic %s: %v", rt.Topic, err)
		}
	}
}

// openGroup starts a driver on topic in group with ordering ord; the test
// closes it.
func openGroup(t testing.TB, c *kfake.Cluster, topic, group, deadLetter string, ord Ordering) *Driver {
	t.Helper()
	cfg := testConfig(topic)
	cfg.GroupOptions.GroupID = group
	cfg.Ordering = ord
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := newDriver(ctx, "conformance", Global{Brokers: c.ListenAddrs()}, cfg, deadLetter, nil, fastGroup()...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

func TestConformance(t *testing.T) {
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
		topic, dlq, group := "t-"+id, "t-"+id+"-dlq", "g-"+id
		// One partition: RetryPosition compares jobs with different keys.
		createTopics(t, admin, 1, topic, dlq)
		// ReceiveReady hands out only what Receive would: on one
		// partition under ordering: partition nothing while the job
		// Receive took is out. The case's jobs have no key, so each has
		// its ID as key: under ordering: key the rest of the backlog is
		// ready at once, which is what the case checks.
		ord := OrderPartition
		if strings.HasSuffix(t.Name(), "/ReceiveReady") {
			ord = OrderKey
		}
		d := openGroup(t, c, topic, group, dlq, ord)
		return consumertest.Pair{
			Consumer:  d,
			Publisher: d,
			Reopen: func(t *testing.T) consumer.Consumer {
				return openGroup(t, c, topic, group, dlq, ord)
			},
			DeadIDs: func(ctx context.Context) ([]string, error) {
				return recordIDs(ctx, c, dlq)
			},
		}
	})
}

// recordIDs reads the rr_id header of every record in topic.
func recordIDs(ctx context.Context, c *kfake.Cluster, topic string) ([]string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := endOffsets(ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	var ids []string
	read := int64(0)
	for read < ends {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return ids, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			read++
			if id, ok := header(r, hdrID); ok {
				ids = append(ids, id)
			}
		})
	}
	return ids, nil
}

// endOffsets returns the sum of the end offsets of topic's partitions.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (int64, error) {
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, t := range mresp.Topics {
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = p.Partition
			rp.Timestamp = -1 // latest
			rt.Partitions = append(rt.Partitions, rp)
		}
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return 0, err
			}
			sum += p.Offset
		}
	}
	return sum, nil
}
