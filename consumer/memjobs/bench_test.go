package memjobs_test

import (
	"context"
	"sync"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// BenchmarkPublishReceiveAck measures one job's trip through the queue:
// published in batches of 1000 (as PushBatch does), received and acked.
func BenchmarkPublishReceiveAck(b *testing.B) {
	const batch = 1000
	ctx := context.Background()
	q := memjobs.New("bench", memjobs.Config{}, nil)
	defer q.Close(ctx)
	payload := []byte("0123456789abcdef0123456789abcdef")
	jobs := make([]consumer.Job, batch)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: "id", Name: "Echo", Payload: payload}
	}
	ackO := consumer.Outcome{Action: consumer.Ack}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		if err := q.Publish(ctx, jobs[:n]); err != nil {
			b.Fatal(err)
		}
		for range n {
			d, err := q.Receive(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := d.Settle(ctx, ackO); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
}

// BenchmarkPublishReceiveAckParallel is the same with one publisher and
// four receivers contending for the queue.
func BenchmarkPublishReceiveAckParallel(b *testing.B) {
	const batch, receivers = 1000, 4
	ctx := context.Background()
	q := memjobs.New("bench", memjobs.Config{}, nil)
	payload := []byte("0123456789abcdef0123456789abcdef")
	jobs := make([]consumer.Job, batch)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: "id", Name: "Echo", Payload: payload}
	}
	ackO := consumer.Outcome{Action: consumer.Ack}
	per := b.N / receivers
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for r := range receivers {
		n := per
		if r == 0 {
			n += b.N % receivers
		}
		wg.Go(func() {
			for range n {
				d, err := q.Receive(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if err := d.Settle(ctx, ackO); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		if err := q.Publish(ctx, jobs[:n]); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	wg.Wait()
	b.StopTimer()
	if err := q.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkQueuedMemory reports the heap bytes one queued job costs with
// 100,000 jobs queued (see queuedJobCost).
func BenchmarkQueuedMemory(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(queuedJobCost(b, 100000, 1000), "B/queued-job")
	}
}
