package sqsjobs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// BenchmarkReceiveDelete measures receive+ack throughput against the
// emulator (moto is the bottleneck there; fauxqs shows the driver's cost):
// b.N jobs are published first (not timed), then 8 receivers (prefetch
// 10) take and ack them; acks are batched into DeleteMessageBatch.
func BenchmarkReceiveDelete(b *testing.B) {
	d := open(b, testConfig(uniqueName("")), "")
	jobs := make([]consumer.Job, b.N)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprintf("bench-%d", i), Name: "App\\Job", Payload: []byte(`{"n":1}`)}
	}
	publish(b, d, jobs...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	b.ResetTimer()
	for range 8 {
		wg.Go(func() {
			for left.Load() > 0 {
				dl, err := d.Receive(ctx)
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				if err := dl.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); err != nil {
					errs <- err
					cancel()
					return
				}
				if left.Add(-1) == 0 {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if n := left.Load(); n != 0 {
		b.Fatalf("%d jobs not received", n)
	}
}
