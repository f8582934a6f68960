package amqpjobs

import (
	"context"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/consumertest"
)

func TestConformance(t *testing.T) {
	needBroker(t)
	const retryDelay = 300 * time.Millisecond
	features := consumertest.Features{
		Delay:               true,
		RetryPosition:       true, // classic queue: basic.nack(requeue) keeps the position
		AttemptCount:        true,
		ReleaseKeepsAttempt: true,
		AutoAck:             true,
		Timeout:             10 * time.Second,
		Quiet:               300 * time.Millisecond,
		RetryDelay:          retryDelay,
	}
	consumertest.Run(t, features, func(t *testing.T) consumertest.Pair {
		cfg := testConfig(t, retryDelay)
		dlq := cfg.Queue + ".dead"
		deleteQueues(t, dlq)
		d := open(t, cfg, dlq)
		return consumertest.Pair{
			Consumer:  d,
			Publisher: d,
			Reopen: func(t *testing.T) consumer.Consumer {
				return open(t, cfg, dlq)
			},
			DeadIDs: func(ctx context.Context) ([]string, error) {
				var ids []string
				for _, m := range peekAll(t, dlq) {
					id, _ := m.Headers[hdrID].(string)
					ids = append(ids, id)
				}
				return ids, nil
			},
		}
	})
}
