package sqsjobs

import (
	"context"
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
		return conformancePair(t, fifoSuffix)
	})
}
