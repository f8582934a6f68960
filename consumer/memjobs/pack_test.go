package memjobs_test

import (
	"context"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// TestPlainJobsKeepEveryField publishes plain jobs (no key, no delay) with
// every field varied in one batch and checks each delivery field by field.
func TestPlainJobsKeepEveryField(t *testing.T) {
	q := newQueue(t, memjobs.Config{Priority: 4})
	long := strings.Repeat("L", 300) // a two-byte length
	in := []consumer.Job{
		{ID: "a", Name: "App\\One", Payload: []byte("first")},
		{ID: "b", Name: "App\\Two", Payload: []byte(long), Headers: map[string][]string{"x-a": {"1", "2"}, "x-b": {""}, "x-c": {}}},
		{ID: "", Name: "App\\One", Payload: nil},
		{ID: strings.Repeat("i", 200), Name: "App\\Three", Payload: []byte{}, AutoAck: true},
		{ID: "e", Name: "App\\Two", Payload: []byte("fifth"), Priority: 4, Headers: map[string][]string{"k": {"v"}}},
	}
	publish(t, q, in...)
	if st := stat(t, q); st.Ready != int64(len(in)) {
		t.Fatalf("Ready = %d, want %d", st.Ready, len(in))
	}
	for i, j := range in {
		d := receive(t, q)
		if j.ID == "" {
			if len(d.ID) != 36 {
				t.Fatalf("job %d: generated id %q, want a UUID", i, d.ID)
			}
		} else if d.ID != j.ID {
			t.Fatalf("job %d: id %q, want %q", i, d.ID, j.ID)
		}
		if d.Job != j.Name || string(d.Body) != string(j.Payload) || d.Priority != 4 || d.Attempt != 1 || d.Key != "" {
			t.Fatalf("job %d: delivery %+v, want %+v", i, d, j)
		}
		if len(d.Headers) != len(j.Headers) || !maps.EqualFunc(d.Headers, j.Headers, slices.Equal) {
			t.Fatalf("job %d: headers %v, want %v", i, d.Headers, j.Headers)
		}
		if j.AutoAck {
			if st := stat(t, q); st.Active != 0 {
				t.Fatalf("auto-ack job %d counts as active: %+v", i, st)
			}
			continue
		}
		settle(t, d, ack)
	}
	if st := stat(t, q); st.Ready != 0 || st.Active != 0 {
		t.Fatalf("after all: %+v", st)
	}
}

// TestManyJobNamesInOneBatch: a batch whose jobs cycle through more names
// than the builder scans keeps every job's name.
func TestManyJobNamesInOneBatch(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	var in []consumer.Job
	for i := range 100 {
		in = append(in, consumer.Job{ID: strconv.Itoa(i), Name: "Job" + strconv.Itoa(i%13)})
	}
	publish(t, q, in...)
	for _, j := range in {
		d := receive(t, q)
		if d.ID != j.ID || d.Job != j.Name {
			t.Fatalf("got %s %s, want %s %s", d.ID, d.Job, j.ID, j.Name)
		}
		settle(t, d, ack)
	}
}

// TestMixedBatchKeepsPublishOrder mixes plain, keyed and delayed jobs of
// two priorities in one batch: within a priority, jobs come out in publish
// order whatever their kind.
func TestMixedBatchKeepsPublishOrder(t *testing.T) {
	q := newQueue(t, memjobs.Config{Priority: 5})
	publish(t, q,
		consumer.Job{ID: "p1"},
		consumer.Job{ID: "k1", Key: "a"},
		consumer.Job{ID: "u1", Priority: 1},
		consumer.Job{ID: "p2"},
		consumer.Job{ID: "d1", Delay: time.Hour},
		consumer.Job{ID: "k2", Key: "b"},
		consumer.Job{ID: "u2", Priority: 1, Key: "c"},
		consumer.Job{ID: "p3"},
		consumer.Job{ID: "u3", Priority: 1},
	)
	got := ids(t, q, 8)
	want := []string{"u1", "u2", "u3", "p1", "k1", "p2", "k2", "p3"}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if st := stat(t, q); st.Delayed != 1 {
		t.Fatalf("Delayed = %d, want 1", st.Delayed)
	}
}

// TestPackedJobRetriedWithDelay: a plain job retried with a delay comes
// back whole, with its requeue header, after the delay; jobs published
// after it are not held up.
func TestPackedJobRetriedWithDelay(t *testing.T) {
	q := newQueue(t, memjobs.Config{})
	publish(t, q,
		consumer.Job{ID: "a", Name: "N", Payload: []byte("payload-a"), Headers: map[string][]string{"h": {"1"}}},
		consumer.Job{ID: "b", Name: "N", Payload: []byte("payload-b")},
	)
	d := receive(t, q)
	settle(t, d, consumer.Outcome{Action: consumer.Retry, Delay: 150 * time.Millisecond, Headers: map[string][]string{"r": {"2"}}})
	b := receive(t, q)
	if b.ID != "b" || string(b.Body) != "payload-b" {
		t.Fatalf("second delivery %q %q, want b", b.ID, b.Body)
	}
	settle(t, b, ack)
	a := receive(t, q)
	want := map[string][]string{"h": {"1"}, "r": {"2"}}
	if a.ID != "a" || a.Job != "N" || string(a.Body) != "payload-a" || a.Attempt != 2 || !maps.EqualFunc(a.Headers, want, slices.Equal) {
		t.Fatalf("retried delivery %+v, want a, attempt 2, headers %v", a, want)
	}
	settle(t, a, consumer.Outcome{Action: consumer.Dead, Reason: "gave up"})
	dead := q.Dead()
	if len(dead) != 1 || dead[0].Job.ID != "a" || string(dead[0].Job.Payload) != "payload-a" || dead[0].Attempts != 2 {
		t.Fatalf("dead list %+v", dead)
	}
}

// TestQueuedJobCost: a queued plain job costs the heap its id, its
// payload and a few bytes more, not a struct and allocations of its own.
func TestQueuedJobCost(t *testing.T) {
	// 32 bytes of payload, 5 of id, 6 of record.
	if perJob := queuedJobCost(t, 100000, 1000); perJob > 64 {
		t.Fatalf("a queued job costs %.1f heap bytes, want at most 64", perJob)
	}
	// Pushed one at a time (Push, not PushBatch) into a backlog: into open
	// packs, as compact as batches. (As items they cost about 170.)
	if perJob := queuedJobCost(t, 20000, 1); perJob > 64 {
		t.Fatalf("a job published alone costs %.1f heap bytes, want at most 64", perJob)
	}
}

// queuedJobCost publishes n jobs in batches of batch, each as
// bench/memory.sh does (a short id, a 32-byte payload, one job name; each
// job with its own strings, as a decoded RPC request hands them over) and
// returns the heap bytes per queued job, the job's own bytes included.
func queuedJobCost(tb testing.TB, n, batch int) float64 {
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	q := memjobs.New("cost", memjobs.Config{}, nil)
	for k := range n / batch {
		js := make([]consumer.Job, batch)
		for i := range js {
			js[i] = consumer.Job{ID: strconv.Itoa(k*batch + i), Name: string([]byte("App\\Jobs\\Echo")),
				Payload: []byte("0123456789abcdef0123456789abcdef")}
		}
		if err := q.Publish(ctx, js); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if st, _ := q.Stat(ctx); st.Ready != int64(n) {
		tb.Fatalf("Ready = %d, want %d", st.Ready, n)
	}
	runtime.KeepAlive(q)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}
