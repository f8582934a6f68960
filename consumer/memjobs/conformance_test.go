package memjobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer/consumertest"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

func TestConformance(t *testing.T) {
	features := consumertest.Features{
		Delay:               true,
		Priority:            true,
		KeyOrder:            true,
		RetryPosition:       true,
		AttemptCount:        true,
		ReleaseKeepsAttempt: true,
		AutoAck:             true,
		Timeout:             5 * time.Second,
		Quiet:               150 * time.Millisecond,
		RetryDelay:          100 * time.Millisecond,
	}
	consumertest.Run(t, features, func(t *testing.T) consumertest.Pair {
		q := memjobs.New("conformance", memjobs.Config{}, nil)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = q.Close(ctx) // the suite closed it already; this only guards early failures
		})
		return consumertest.Pair{
			Consumer:  q,
			Publisher: q,
			DeadIDs: func(context.Context) ([]string, error) {
				var ids []string
				for _, d := range q.Dead() {
					ids = append(ids, d.Job.ID)
				}
				return ids, nil
			},
		}
	})
}
