package kafkajobs

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// BenchmarkConsumeCommit measures consume + ack + commit throughput: b.N
// jobs on 4 partitions are published up front, then 8 receivers take and
// ack them; the clock stops once the group's commits cover every job.
//
//	go test -run '^$' -bench ConsumeCommit ./consumer/kafkajobs/
func BenchmarkConsumeCommit(b *testing.B) {
	for _, ord := range []Ordering{OrderPartition, OrderKey} {
		b.Run(string(ord), func(b *testing.B) {
			const partitions = 4
			c := newCluster(b, partitions, "bench")
			cfg := testConfig("bench")
			cfg.Ordering = ord
			d := open(b, c, cfg, "")
			const chunk = 500
			for i := 0; i < b.N; i += chunk {
				batch := make([]consumer.Job, 0, chunk)
				for j := i; j < min(i+chunk, b.N); j++ {
					id := strconv.Itoa(j)
					batch = append(batch, consumer.Job{ID: id, Key: "k" + strconv.Itoa(j%64), Payload: []byte(id)})
				}
				publish(b, d, batch...)
			}
			cl := rawClient(b, c)

			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				done int
			)
			for range 8 {
				wg.Go(func() {
					for {
						dl, err := d.Receive(ctx)
						if err != nil {
							return
						}
						if err := dl.Settle(ctx, consumer.Outcome{Action: consumer.Ack}); err != nil {
							b.Errorf("ack: %v", err)
							return
						}
						mu.Lock()
						done++
						if done == b.N {
							cancel()
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for {
				var sum int64
				for p := range int32(partitions) {
					if off := committed(b, cl, testGroup, "bench", p); off > 0 {
						sum += off
					}
				}
				if sum == int64(b.N) {
					break
				}
				if time.Since(start) > 5*time.Minute {
					b.Fatalf("commits cover %d of %d jobs", sum, b.N)
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}
