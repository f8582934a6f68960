package amqpjobs

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestMultipleAckUnderConcurrency acks with multiple_ack from many
// workers at once: every job runs once, no settlement fails, and the
// broker never closes the channel. (A multiple ack that covered a tag
// whose own ack was still to go out made that ack hit an unknown delivery
// tag: RabbitMQ closed the channel and redelivered everything unacked on
// it; the same window let a multiple ack swallow a Retry's nack.)
func TestMultipleAckUnderConcurrency(t *testing.T) {
	cfg := testConfig(t)
	cfg.MultipleAck = true
	cfg.Prefetch = 200
	d := open(t, cfg, "")
	const n = 3000
	jobs := numbered("c", n)
	for i := 0; i < n; i += 500 {
		publish(t, d, jobs[i:i+500]...)
	}
	var (
		seen       sync.Map
		got, dups  atomic.Int64
		settleErrs atomic.Int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for got.Load() < n && ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				del, err := d.Receive(rctx)
				rcancel()
				if err != nil {
					continue
				}
				if _, again := seen.LoadOrStore(del.ID, true); again {
					dups.Add(1)
				} else {
					got.Add(1)
				}
				if err := del.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); err != nil {
					settleErrs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got.Load() != n || dups.Load() > 0 || settleErrs.Load() > 0 {
		t.Fatalf("%d of %d jobs run, %d run twice, %d settle errors", got.Load(), n, dups.Load(), settleErrs.Load())
	}
	if s := d.current(); s == nil || s.gen != 1 {
		t.Fatalf("the channel was replaced: the broker closed it over a settlement")
	}
	waitFor(t, 5*time.Second, "an empty queue", func() bool { return queueCount(t, cfg.Queue) == 0 })
}
