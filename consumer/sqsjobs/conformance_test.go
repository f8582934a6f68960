package sqsjobs

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/consumertest"
)

// conformancePair opens a driver on a fresh queue (name ends in suffix)
// with a dead-letter queue.
func conformancePair(t *testing.T, suffix string) consumertest.Pair {
	queue, dlq := uniqueName(suffix), uniqueName("-dlq"+suffix)
	d := open(t, testConfig(queue), dlq)
	raw := rawClient(t)
	dlqURL := queueURL(t, raw, dlq)
	return consumertest.Pair{
		Consumer:  d,
		Publisher: d,
		Reopen: func(t *testing.T) consumer.Consumer {
			return open(t, testConfig(queue), dlq)
		},
		DeadIDs: func(ctx context.Context) ([]string, error) {
			return peekIDs(ctx, raw, dlqURL)
		},
	}
}

func TestConformance(t *testing.T) {
	needMoto(t)
	features := consumertest.Features{
		Delay:               true,
		AttemptCount:        true,
		ReleaseKeepsAttempt: true,
		AutoAck:             true,
		RetryDelay:          time.Second,
	}
	consumertest.Run(t, features, func(t *testing.T) consumertest.Pair {
		return conformancePair(t, "")
	})
}

// TestConformanceFIFO: the suite's jobs have no key, so on a FIFO queue
// they all share one message group, where nothing is ready behind a
// message handed out until it is settled: the ReceiveReady case, which
// waits for the rest of a backlog while its first job is out, asks for
// what the group rule forbids. It is skipped here (the driver is hidden
// behind a plain consumer.Consumer) and runs in TestConformanceFIFOGroups.
func TestConformanceFIFO(t *testing.T) {
	needMoto(t)
	features := consumertest.Features{
		KeyOrder:            true,
		RetryPosition:       true,
		AttemptCount:        true,
		ReleaseKeepsAttempt: true,
		AutoAck:             true,
		RetryDelay:          time.Second,
	}
	consumertest.Run(t, features, func(t *testing.T) consumertest.Pair {
		p := conformancePair(t, fifoSuffix)
		p.Consumer = plainConsumer{p.Consumer}
		return p
	})
}

// TestConformanceFIFOGroups runs the suite on a FIFO queue where every
// job without a key gets a message group of its own (so neither order
// across jobs nor a retried job's position is promised), ReceiveReady
// included.
func TestConformanceFIFOGroups(t *testing.T) {
	needMoto(t)
	features := consumertest.Features{
		AttemptCount:        true,
		ReleaseKeepsAttempt: true,
		AutoAck:             true,
		RetryDelay:          time.Second,
	}
	consumertest.Run(t, features, func(t *testing.T) consumertest.Pair {
		p := conformancePair(t, fifoSuffix)
		p.Publisher = ownGroups{p.Publisher}
		return p
	})
}

// plainConsumer is a consumer.Consumer and nothing more.
type plainConsumer struct{ consumer.Consumer }

// ownGroups publishes each job without a key with its ID as key (its
// FIFO message group).
type ownGroups struct{ consumer.Publisher }

func (p ownGroups) Publish(ctx context.Context, jobs []consumer.Job) error {
	jobs = slices.Clone(jobs)
	for i := range jobs {
		if jobs[i].Key == "" {
			jobs[i].Key = jobs[i].ID
		}
	}
	return p.Publisher.Publish(ctx, jobs)
}
