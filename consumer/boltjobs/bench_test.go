package boltjobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
)

// BenchmarkPublishReceiveAck measures one job's trip through the file:
// published in batches of 1000 (as PushBatch does), received and acked.
func BenchmarkPublishReceiveAck(b *testing.B) {
	const batch = 1000
	ctx := context.Background()
	q := openQueue(b, boltjobs.NewFiles(nil, nil), "bench", boltjobs.Config{File: filepath.Join(b.TempDir(), "jobs.db")})
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// singleClients is how many publishers push one job at a time at once in
// the single-push benchmarks.
const singleClients = 32

// BenchmarkPublishSingle measures jobs published one at a time by
// singleClients publishers at once: group commit puts the jobs of many
// publishers in one write transaction and one fsync.
func BenchmarkPublishSingle(b *testing.B) {
	ctx := context.Background()
	q := openQueue(b, boltjobs.NewFiles(nil, nil), "bench", boltjobs.Config{File: filepath.Join(b.TempDir(), "jobs.db")})
	runClients(b, func(i int) error {
		return q.Publish(ctx, []consumer.Job{{ID: strconv.Itoa(i), Name: "Echo", Payload: []byte("single")}})
	})
}

// BenchmarkFsyncPerJob is the floor BenchmarkPublishSingle is measured
// against: the same publishers, one bbolt write transaction (one fsync)
// per job.
func BenchmarkFsyncPerJob(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "floor.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := []byte("single")
	runClients(b, func(i int) error {
		return db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("jobs"))
			if err != nil {
				return err
			}
			return bk.Put([]byte(strconv.Itoa(i)), val)
		})
	})
}

// runClients runs push b.N times over singleClients goroutines and
// reports jobs/s.
func runClients(b *testing.B, push func(i int) error) {
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, singleClients)
	per := (b.N + singleClients - 1) / singleClients
	for c := range singleClients {
		wg.Go(func() {
			for i := c * per; i < min(b.N, (c+1)*per); i++ {
				if err := push(i); err != nil {
					errs <- fmt.Errorf("push %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}
