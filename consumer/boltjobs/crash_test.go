package boltjobs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
)

// crashCopy returns cfg on a copy of q's file as a crash at this moment
// leaves it (the commits done so far, nothing else); q goes on.
func crashCopy(t *testing.T, q *boltjobs.Queue, cfg boltjobs.Config) boltjobs.Config {
	t.Helper()
	cfg.File = filepath.Join(t.TempDir(), "crashed.db")
	if err := boltjobs.CrashCopy(q, cfg.File); err != nil {
		t.Fatalf("copy of the file: %v", err)
	}
	return cfg
}

// drain receives and acks every job of q (none delayed) and returns their
// ids and attempts in the order handed out.
func drain(t *testing.T, q *boltjobs.Queue) (ids []string, attempts map[string]int) {
	t.Helper()
	attempts = map[string]int{}
	for {
		st, _ := q.Stat(context.Background())
		if st.Ready == 0 && st.Active == 0 {
			return ids, attempts
		}
		d := receive(t, q)
		ids = append(ids, d.ID)
		attempts[d.ID] = d.Attempt
		settle(t, d, consumer.Outcome{Action: consumer.Ack})
	}
}

// A job counts an attempt when the process or the machine dies however
// soon after Receive returned it: its running mark is on disk first.
func TestCrashRightAfterHandOutCountsAttempt(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "crash", cfg)
	publish(t, q, consumer.Job{ID: "only"})
	running := receive(t, q)
	crashed := openQueue(t, boltjobs.NewFiles(nil, nil), "crash", crashCopy(t, q, cfg))
	settle(t, running, consumer.Outcome{Action: consumer.Ack})
	d := receive(t, crashed)
	if d.ID != "only" || d.Attempt != 2 {
		t.Errorf("after a crash right after its hand-out: %q attempt %d, want only at attempt 2", d.ID, d.Attempt)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
}

// Crashes at random moments of a busy queue: every job handed out and not
// acked comes back with its attempt counted, at most MarkAhead jobs that
// had not started come back counted too, and the jobs keep their order.
func TestCrashWhileBusyCountsEveryHandOut(t *testing.T) {
	const n = 3000
	cfg := tempConfig(t)
	cfg.Prefetch = 200
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "busy", cfg)
	var jobs []consumer.Job
	for i := range n {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("job-%05d", i)})
	}
	for i := 0; i < n; i += 500 {
		publish(t, q, jobs[i:i+500]...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	running := map[string]bool{} // handed out, not acked
	handed := map[string]bool{}  // handed out, acked or not
	var active []*consumer.Delivery
	for crash := range 8 {
		for range 1 + rng.IntN(150) {
			var ds []*consumer.Delivery
			if len(active) < cfg.Prefetch {
				ds = append(ds, receive(t, q))
			}
			ds = q.ReceiveReady(ds, rng.IntN(8))
			for _, d := range ds {
				running[d.ID], handed[d.ID] = true, true
			}
			active = append(active, ds...)
			for len(active) > 0 && rng.IntN(3) > 0 {
				d := active[0]
				active = active[1:]
				settle(t, d, consumer.Outcome{Action: consumer.Ack})
				delete(running, d.ID)
			}
		}
		t.Run(fmt.Sprintf("crash %d", crash+1), func(t *testing.T) {
			crashed := openQueue(t, boltjobs.NewFiles(nil, nil), "busy", crashCopy(t, q, cfg))
			ids, attempts := drain(t, crashed)
			ahead, acked, last := 0, 0, ""
			for _, id := range ids {
				switch a := attempts[id]; {
				case a != 1 && a != 2:
					t.Errorf("job %s attempt %d after one crash", id, a)
				case running[id] && a != 2:
					t.Errorf("job %s was running at the crash; after it attempt %d, want 2", id, a)
				case handed[id] && !running[id]:
					acked++ // its ack was not committed yet
				case !handed[id] && a == 2:
					ahead++ // marked ahead
				}
				if id < last {
					t.Errorf("job %s handed out after %s: order lost", id, last)
				}
				last = id
			}
			if ahead > boltjobs.MarkAhead {
				t.Errorf("%d jobs that had not started came back counted, want at most %d", ahead, boltjobs.MarkAhead)
			}
			t.Logf("%d jobs left: %d running at the crash, %d acked in the lost commit, %d marked ahead", len(ids), len(running), acked, ahead)
		})
	}
}

// Jobs marked ahead lose their mark on Pause and on Close: a crash while
// paused, or an open after a clean Close, counts no attempt of a job that
// did not run.
func TestPauseAndCloseTakeMarksAheadOff(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "p", cfg)
	var jobs []consumer.Job
	for i := range 100 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("job-%03d", i)})
	}
	publish(t, q, jobs...)
	var held []*consumer.Delivery
	for range 10 {
		held = q.ReceiveReady(append(held, receive(t, q)), 2) // at most 30
	}
	if err := q.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	publish(t, q, consumer.Job{ID: "job-100"}) // a commit after Pause's
	check := func(t *testing.T, q *boltjobs.Queue, counted map[string]bool) {
		t.Helper()
		_ = q.Resume(context.Background())
		ids, attempts := drain(t, q)
		for _, id := range ids {
			if want := map[bool]int{true: 2, false: 1}[counted[id]]; attempts[id] != want {
				t.Errorf("job %s: attempt %d, want %d", id, attempts[id], want)
			}
		}
	}
	held1 := map[string]bool{}
	for _, d := range held {
		held1[d.ID] = true
	}
	t.Run("crash while paused", func(t *testing.T) {
		check(t, openQueue(t, boltjobs.NewFiles(nil, nil), "p", crashCopy(t, q, cfg)), held1)
	})
	for _, d := range held {
		settle(t, d, consumer.Outcome{Action: consumer.Ack})
	}
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		settle(t, receive(t, q), consumer.Outcome{Action: consumer.Ack})
	}
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Run("open after Close", func(t *testing.T) {
		check(t, openQueue(t, boltjobs.NewFiles(nil, nil), "p", cfg), nil)
	})
}

// A job published to an idle queue is marked by its own commit: it is
// handed out as soon as Publish returns, without waiting for another
// fsync.
func TestPublishedJobIsReadyAtOnce(t *testing.T) {
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "idle", tempConfig(t))
	for i := range 3 {
		publish(t, q, consumer.Job{ID: fmt.Sprintf("job-%d", i)})
		ds := q.ReceiveReady(nil, 1)
		if len(ds) != 1 || ds[0].ID != fmt.Sprintf("job-%d", i) {
			t.Fatalf("ReceiveReady right after Publish of job-%d returned %d deliveries, want it", i, len(ds))
		}
		settle(t, ds[0], consumer.Outcome{Action: consumer.Ack})
	}
}

// After a crash while paused (no job marked ahead) only the jobs that
// were running count an attempt: a job retried, released (with or without
// a delay) or acked before it does not count one more.
func TestCrashCountsOnlyRunningJobs(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "settled", cfg)
	publish(t, q, consumer.Job{ID: "retried"}, consumer.Job{ID: "released"}, consumer.Job{ID: "released-later"},
		consumer.Job{ID: "running"}, consumer.Job{ID: "acked"})
	ds := map[string]*consumer.Delivery{}
	for range 5 {
		d := receive(t, q)
		ds[d.ID] = d
	}
	settle(t, ds["retried"], consumer.Outcome{Action: consumer.Retry, Delay: time.Millisecond})
	settle(t, ds["released"], consumer.Outcome{Action: consumer.Release})
	settle(t, ds["released-later"], consumer.Outcome{Action: consumer.Release, Delay: time.Millisecond})
	settle(t, ds["acked"], consumer.Outcome{Action: consumer.Ack})
	if err := q.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	publish(t, q, consumer.Job{ID: "after"}) // a commit after the settlements
	crashed := openQueue(t, boltjobs.NewFiles(nil, nil), "settled", crashCopy(t, q, cfg))
	if err := crashed.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	settle(t, ds["running"], consumer.Outcome{Action: consumer.Ack})
	got := map[string]int{}
	for range 5 {
		d := receive(t, crashed)
		got[d.ID] = d.Attempt
		settle(t, d, consumer.Outcome{Action: consumer.Ack})
	}
	want := map[string]int{"retried": 2, "released": 1, "released-later": 1, "running": 2, "after": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attempts after the crash = %v, want %v", got, want)
	}
}

// A running mark an earlier version left in the running bucket still
// counts the job's attempt at open.
func TestRunningBucketOfEarlierVersionCounts(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "old", cfg)
	publish(t, q, consumer.Job{ID: "was-running"}, consumer.Job{ID: "was-waiting"})
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(cfg.File, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		jobs := tx.Bucket([]byte("old")).Bucket([]byte("jobs"))
		k, _ := jobs.Cursor().First()
		return tx.Bucket([]byte("old")).Bucket([]byte("running")).Put(k, nil)
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	q = openQueue(t, boltjobs.NewFiles(nil, nil), "old", cfg)
	got := map[string]int{}
	for range 2 {
		d := receive(t, q)
		got[d.ID] = d.Attempt
		settle(t, d, consumer.Outcome{Action: consumer.Ack})
	}
	if got["was-running"] != 2 || got["was-waiting"] != 1 {
		t.Errorf("attempts = %v, want was-running 2, was-waiting 1", got)
	}
}
