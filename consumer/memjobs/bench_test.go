package memjobs_test

import (
	"context"
	"runtime"
	"strconv"
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
// 100,000 jobs queued (as bench/memory.sh queues them: a short id, a
// 32-byte payload, one job name), including the job's own strings.
func BenchmarkQueuedMemory(b *testing.B) {
	const n = 100000
	ctx := context.Background()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		q := memjobs.New("bench", memjobs.Config{}, nil)
		for k := range n / 1000 {
			// Every job gets its own id, name and payload, as a decoded
			// RPC request hands them over.
			js := make([]consumer.Job, 1000)
			for i := range js {
				js[i] = consumer.Job{ID: strconv.Itoa(k*1000 + i), Name: string([]byte("App\\Jobs\\Echo")),
					Payload: []byte("0123456789abcdef0123456789abcdef")}
			}
			if err := q.Publish(ctx, js); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "B/queued-job")
		if st, _ := q.Stat(ctx); st.Ready != n {
			b.Fatalf("Ready = %d, want %d", st.Ready, n)
		}
	}
}
