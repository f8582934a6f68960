package kafkajobs

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

// produceDated writes one record per timestamp to topic[partition], in that
// order, with a plain client; delayUntil, when not zero, is written as
// rr_delay_until on every record.
func produceDated(t testing.TB, c *kfake.Cluster, topic string, partition int32, delayUntil time.Time, at ...time.Time) {
	t.Helper()
	cl := rawClient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	recs := make([]*kgo.Record, 0, len(at))
	for i, ts := range at {
		r := &kgo.Record{Topic: topic, Partition: partition, Timestamp: ts, Value: []byte(strconv.Itoa(i))}
		if !delayUntil.IsZero() {
			r.Headers = append(r.Headers, delayHeader(delayUntil))
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(testCtx(t, 10*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// wantOldest waits until OldestReady reports want (the zero time: none).
func wantOldest(t testing.TB, d *Driver, want time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := d.OldestReady()
		if ok == !want.IsZero() && got.Equal(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("OldestReady = %v, %v; want %v, %v", got, ok, want, !want.IsZero())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOldest asserts that OldestReady reports want now (the zero time:
// none).
func checkOldest(t testing.TB, d *Driver, want time.Time) {
	t.Helper()
	if got, ok := d.OldestReady(); ok != !want.IsZero() || !got.Equal(want) {
		t.Fatalf("OldestReady = %v, %v; want %v, %v", got, ok, want, !want.IsZero())
	}
}

// TestOldestReadyIsTheOldestWaitingRecord: records fetched while nobody
// receives age from their timestamps; a delayed record does not count
// before its time, a record handed out no longer counts, the next one
// waiting behind it does; once all are settled none waits.
func TestOldestReadyIsTheOldestWaitingRecord(t *testing.T) {
	c := newCluster(t, 1, "orders")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	// Offset 0 is older than all but delayed for an hour.
	produceDated(t, c, "orders", 0, time.Now().Add(time.Hour), base.Add(-time.Hour))
	produceDated(t, c, "orders", 0, time.Time{}, base, base.Add(time.Minute), base.Add(2*time.Minute))
	d := open(t, c, testConfig("orders"), "")

	// Nothing received yet: the records are only in kgo's buffer.
	wantOldest(t, d, base)

	for i, next := range []time.Time{base.Add(time.Minute), base.Add(2 * time.Minute), {}} {
		dl := receive(t, d)
		if want := base.Add(time.Duration(i) * time.Minute); !dl.Enqueued.Equal(want) {
			t.Fatalf("received %s enqueued %v, want %v", dl.ID, dl.Enqueued, want)
		}
		checkOldest(t, d, next) // the one behind it waits, it does not
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
		checkOldest(t, d, next)
	}
	receiveNone(t, d, 100*time.Millisecond)
	checkOldest(t, d, time.Time{})
}

// TestOldestReadyOverPartitions: the oldest over every partition's
// records, those held back behind a record out of their partition
// included.
func TestOldestReadyOverPartitions(t *testing.T) {
	c := newCluster(t, 3, "orders")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	m := func(n int) time.Time { return base.Add(time.Duration(n) * time.Minute) }
	produceDated(t, c, "orders", 0, time.Time{}, m(2), m(5))
	produceDated(t, c, "orders", 1, time.Time{}, m(0), m(4))
	produceDated(t, c, "orders", 2, time.Time{}, m(1), m(3))
	d := open(t, c, testConfig("orders"), "")

	wantOldest(t, d, m(0))

	// One record of each partition out (ordering: partition): the second
	// ones wait behind them.
	var out []*consumer.Delivery
	for range 3 {
		out = append(out, receive(t, d))
	}
	checkOldest(t, d, m(3))
	for _, dl := range out {
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	checkOldest(t, d, m(3))

	out = out[:0]
	for range 3 {
		out = append(out, receive(t, d))
	}
	checkOldest(t, d, time.Time{})
	for _, dl := range out {
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	checkOldest(t, d, time.Time{})
}

// TestOldestReadyRetriedInPlace: a record retried in place does not
// count while its retry delay runs; the record waiting behind it does.
func TestOldestReadyRetriedInPlace(t *testing.T) {
	c := newCluster(t, 1, "orders")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	produceDated(t, c, "orders", 0, time.Time{}, base, base.Add(time.Minute))
	d := open(t, c, testConfig("orders"), "")
	wantOldest(t, d, base)

	dl := receive(t, d)
	settle(t, dl, consumer.Outcome{Action: consumer.Retry, Delay: time.Hour})
	checkOldest(t, d, base.Add(time.Minute))
}

// TestOldestReadyPushOnlyAndClosed: a push-only pipeline and a closed
// driver report that none waits.
func TestOldestReadyPushOnlyAndClosed(t *testing.T) {
	c := newCluster(t, 1, "orders")
	push := open(t, c, Config{}, "")
	checkOldest(t, push, time.Time{})

	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	produceDated(t, c, "orders", 0, time.Time{}, at)
	d := open(t, c, testConfig("orders"), "")
	wantOldest(t, d, at)
	if err := d.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkOldest(t, d, time.Time{})
}

// TestStatReadyCountsFetchedRecords: records kgo fetched before anything
// was received count as ready, as OldestReady sees them.
func TestStatReadyCountsFetchedRecords(t *testing.T) {
	c := newCluster(t, 2, "orders")
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	produceDated(t, c, "orders", 0, time.Time{}, at, at, at)
	produceDated(t, c, "orders", 1, time.Time{}, at, at)
	d := open(t, c, testConfig("orders"), "")
	waitReady := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := d.Stat(testCtx(t, time.Second))
			if err == nil && st.Ready == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Stat = %+v, %v; want Ready %d", st, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitReady(5)
	checkOldest(t, d, at)
	dl := receive(t, d)
	waitReady(4)
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	waitReady(4)
}

// TestRecQueueRemove: records leave the held queue by identity, from the
// front or elsewhere, and the queue keeps the others in order.
func TestRecQueueRemove(t *testing.T) {
	var q recQueue
	recs := make([]*kgo.Record, 6)
	for i := range recs {
		recs[i] = &kgo.Record{Offset: int64(i)}
		q.push(recs[i])
	}
	q.remove(recs[0])
	q.remove(recs[3])
	q.remove(&kgo.Record{Offset: 1}) // not held: nothing changes
	var got []int64
	for _, r := range q.live() {
		got = append(got, r.Offset)
	}
	if want := []int64{1, 2, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	for _, r := range []*kgo.Record{recs[1], recs[2], recs[4], recs[5]} {
		q.remove(r)
	}
	if q.len() != 0 {
		t.Fatalf("held %d records, want none", q.len())
	}
	// Records leaving from the front while others come: the dead front
	// is reused instead of growing the slice.
	prev := &kgo.Record{}
	q.push(prev)
	for i := range 10000 {
		r := &kgo.Record{Offset: int64(i)}
		q.push(r)
		q.remove(prev)
		prev = r
	}
	if q.len() != 1 || q.live()[0] != prev || cap(q.recs) > 64 {
		t.Fatalf("held %d records in a slice of %d, want the last one in a small one", q.len(), cap(q.recs))
	}
}
