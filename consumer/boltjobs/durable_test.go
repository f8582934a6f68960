package boltjobs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
)

// reopen closes q (giving unsettled deliveries no time: as a crash
// leaves them) and opens its pipeline again from the file.
func reopen(t *testing.T, q *boltjobs.Queue, cfg boltjobs.Config) *boltjobs.Queue {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = q.Close(ctx)
	return openQueue(t, boltjobs.NewFiles(nil, nil), q.Name(), cfg)
}

func receive(t *testing.T, q *boltjobs.Queue) *consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := q.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return d
}

func settle(t *testing.T, d *consumer.Delivery, o consumer.Outcome) {
	t.Helper()
	if err := d.Settle(context.Background(), o); err != nil {
		t.Fatalf("Settle %s of %q: %v", o.Action, d.ID, err)
	}
}

func publish(t *testing.T, q *boltjobs.Queue, jobs ...consumer.Job) {
	t.Helper()
	if err := q.Publish(context.Background(), jobs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func tempConfig(t *testing.T) boltjobs.Config {
	return boltjobs.Config{File: filepath.Join(t.TempDir(), "jobs.db")}
}

// A reopened pipeline hands its jobs out in their original order:
// priority first, then publish order, keyed jobs one at a time in order,
// with their headers, payload and attempt intact.
func TestReopenKeepsOrder(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "orders", cfg)
	publish(t, q,
		consumer.Job{ID: "low-1", Priority: 20, Payload: []byte("a")},
		consumer.Job{ID: "k-1", Key: "k", Payload: []byte("b")},
		consumer.Job{ID: "plain-1", Headers: map[string][]string{"x-h": {"1", "2"}}, Payload: []byte("\x00c")},
		consumer.Job{ID: "k-2", Key: "k"},
		consumer.Job{ID: "urgent", Priority: 1},
	)
	publish(t, q, consumer.Job{ID: "plain-2"})
	// plain-1 is retried once before the restart: it keeps its position
	// and comes back with attempt 2.
	d := receive(t, q)
	if d.ID != "urgent" {
		t.Fatalf("first job %q, want urgent", d.ID)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
	d = receive(t, q)
	if d.ID != "k-1" {
		t.Fatalf("second job %q, want k-1", d.ID)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Retry, Headers: map[string][]string{"x-attempt": {"2"}}})

	q = reopen(t, q, cfg)
	var got []string
	for range 5 {
		d := receive(t, q)
		got = append(got, d.ID)
		switch d.ID {
		case "k-1":
			if d.Attempt != 2 || d.Headers["x-attempt"][0] != "2" || string(d.Body) != "b" {
				t.Errorf("k-1 after retry and reopen: attempt %d headers %v body %q", d.Attempt, d.Headers, d.Body)
			}
		case "plain-1":
			if d.Attempt != 1 || len(d.Headers["x-h"]) != 2 || string(d.Body) != "\x00c" {
				t.Errorf("plain-1 after reopen: attempt %d headers %v body %q", d.Attempt, d.Headers, d.Body)
			}
		}
		settle(t, d, consumer.Outcome{Action: consumer.Ack})
	}
	want := "k-1 plain-1 k-2 plain-2 low-1"
	if strings.Join(got, " ") != want {
		t.Errorf("order after reopen: %s, want %s", strings.Join(got, " "), want)
	}
	q = reopen(t, q, cfg)
	if st, _ := q.Stat(context.Background()); st.Ready != 0 || st.Delayed != 0 {
		t.Errorf("after every job was acked and a reopen: %+v", st)
	}
}

// A delay is a deadline: restarts do not start it again.
func TestReopenKeepsDelayDeadline(t *testing.T) {
	cfg := tempConfig(t)
	const delay = time.Second
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "later", cfg)
	start := time.Now()
	publish(t, q, consumer.Job{ID: "later", Delay: delay})
	q = reopen(t, q, cfg)
	if st, _ := q.Stat(context.Background()); st.Delayed != 1 || st.Ready != 0 {
		t.Fatalf("after reopen: %+v, want 1 delayed", st)
	}
	// Nothing before the deadline; then a second restart half-way.
	ctx, cancel := context.WithTimeout(context.Background(), delay/2)
	if d, err := q.Receive(ctx); err == nil {
		t.Fatalf("job %q handed out %v after publish, before its delay", d.ID, time.Since(start))
	}
	cancel()
	q = reopen(t, q, cfg)
	d := receive(t, q)
	el := time.Since(start)
	if el < delay || el > delay+2*delay/5 {
		t.Errorf("delayed job handed out %v after publish across two restarts, want %v (a deadline, not restarted)", el, delay)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
}

// Dead jobs stay in the dead bucket, with reason and attempt, and never
// come back.
func TestReopenDeadStaysDead(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "dead", cfg)
	publish(t, q, consumer.Job{ID: "poison", Name: "Poison", Payload: []byte("p")}, consumer.Job{ID: "fine"})
	d := receive(t, q)
	settle(t, d, consumer.Outcome{Action: consumer.Retry})
	d = receive(t, q)
	if d.ID != "poison" || d.Attempt != 2 {
		t.Fatalf("got %q attempt %d, want poison attempt 2", d.ID, d.Attempt)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Dead, Reason: "exec_ttl"})
	q = reopen(t, q, cfg)
	dead, err := q.ListDead(context.Background(), 0)
	if err != nil || len(dead) != 1 {
		t.Fatalf("Dead after reopen = %v, %v", dead, err)
	}
	if j := dead[0]; j.Job.ID != "poison" || j.Job.Name != "Poison" || string(j.Job.Payload) != "p" || j.Reason != "exec_ttl" || j.Attempts != 2 || time.Since(j.At) > time.Minute {
		t.Errorf("dead job = %+v", j)
	}
	d = receive(t, q)
	if d.ID != "fine" {
		t.Errorf("after reopen got %q, want fine (poison is dead)", d.ID)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
	if ids, err := q.RemoveDead(context.Background(), consumer.DeadSelection{All: true}); len(ids) != 1 || ids[0] != "poison" || err != nil {
		t.Errorf("RemoveDead(all) = %v, %v", ids, err)
	}
	q = reopen(t, q, cfg)
	if dead, err := q.ListDead(context.Background(), 0); len(dead) != 0 || err != nil {
		t.Errorf("ListDead after RemoveDead and reopen = %v, %v", dead, err)
	}
}

// A job handed out when the process stopped without settling it runs
// again, its attempt counted; a released job keeps its attempt.
func TestReopenCountsRunningAttempt(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "running", cfg)
	publish(t, q, consumer.Job{ID: "running"}, consumer.Job{ID: "released"})
	run := receive(t, q)
	rel := receive(t, q)
	// Publish waits for a commit, which carries the running marks.
	publish(t, q, consumer.Job{ID: "after"})
	settle(t, rel, consumer.Outcome{Action: consumer.Release})
	q = reopen(t, q, cfg)
	attempts := map[string]int{}
	for range 3 {
		d := receive(t, q)
		attempts[d.ID] = d.Attempt
		settle(t, d, consumer.Outcome{Action: consumer.Ack})
	}
	if attempts[run.ID] != 2 || attempts["released"] != 1 || attempts["after"] != 1 {
		t.Errorf("attempts after reopen = %v, want running 2 (counted), released 1, after 1", attempts)
	}
}

// A file that is not a usable database is an error naming it, never an
// empty queue: truncated, garbled, or something else entirely.
func TestCorruptFileIsAnError(t *testing.T) {
	build := func(t *testing.T) boltjobs.Config {
		cfg := tempConfig(t)
		q := openQueue(t, boltjobs.NewFiles(nil, nil), "p", cfg)
		var jobs []consumer.Job
		for range 2000 {
			jobs = append(jobs, consumer.Job{Payload: []byte(strings.Repeat("payload ", 20))})
		}
		publish(t, q, jobs...)
		if err := q.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cases := map[string]func(t *testing.T, path string){
		"truncated": func(t *testing.T, path string) {
			info, _ := os.Stat(path)
			if err := os.Truncate(path, info.Size()/2); err != nil {
				t.Fatal(err)
			}
		},
		"garbled": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := []byte(strings.Repeat("\xde\xad\xbe\xef", 4096))
			info, _ := f.Stat()
			for off := int64(2 * os.Getpagesize()); off < info.Size(); off += 3 * int64(len(junk)) {
				if _, err := f.WriteAt(junk, off); err != nil {
					t.Fatal(err)
				}
			}
		},
		"not a database": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("hello, not bbolt\n", 1000)), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := build(t)
			damage(t, cfg.File)
			q, err := boltjobs.NewFiles(nil, nil).Open(context.Background(), "p", cfg, nil)
			if err == nil {
				q.Close(context.Background())
				t.Fatal("Open of a damaged file succeeded")
			}
			if !errors.Is(err, boltjobs.ErrCorrupt) || !strings.Contains(err.Error(), cfg.File) {
				t.Errorf("Open = %v, want ErrCorrupt naming %s", err, cfg.File)
			}
		})
	}
}

// A second opener of a file in use fails at once with ErrLocked naming
// the file.
func TestSecondOpenerFails(t *testing.T) {
	cfg := tempConfig(t)
	openQueue(t, boltjobs.NewFiles(nil, nil), "p", cfg)
	start := time.Now()
	_, err := boltjobs.NewFiles(nil, nil).Open(context.Background(), "p", cfg, nil)
	if !errors.Is(err, boltjobs.ErrLocked) || !strings.Contains(err.Error(), cfg.File) {
		t.Errorf("second Open = %v, want ErrLocked naming %s", err, cfg.File)
	}
	if el := time.Since(start); el > 3*boltjobs.LockTimeout {
		t.Errorf("second Open took %v", el)
	}
}

// Pipelines naming one file share it; each sees only its own jobs, and
// the same pipeline can not be opened twice.
func TestPipelinesShareAFile(t *testing.T) {
	cfg := tempConfig(t)
	files := boltjobs.NewFiles(nil, nil)
	a := openQueue(t, files, "a", cfg)
	b := openQueue(t, files, "b", cfg)
	publish(t, a, consumer.Job{ID: "for-a"})
	publish(t, b, consumer.Job{ID: "for-b"})
	if d := receive(t, b); d.ID != "for-b" {
		t.Errorf("b got %q", d.ID)
	}
	if _, err := files.Open(context.Background(), "a", cfg, nil); !errors.Is(err, boltjobs.ErrInUse) {
		t.Errorf("second Open of a = %v, want ErrInUse", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Close(cancelled); err == nil {
		t.Error("Close of b with a delivery unsettled returned nil")
	}
	a = reopen(t, a, cfg)
	if d := receive(t, a); d.ID != "for-a" {
		t.Errorf("a after reopen got %q", d.ID)
	}
}

// A retried dead job leaves the dead bucket and is queued again as attempt
// 1 with its id, headers and payload, in one commit that a reopen keeps;
// ids not in the bucket are skipped.
func TestRetryDeadAcrossReopen(t *testing.T) {
	ctx := context.Background()
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "dead", cfg)
	publish(t, q,
		consumer.Job{ID: "a", Name: "A", Payload: []byte("pa"), Headers: map[string][]string{"x-h": {"1"}}, Key: "k"},
		consumer.Job{ID: "b", Name: "B"})
	for range 2 {
		settle(t, receive(t, q), consumer.Outcome{Action: consumer.Dead, Reason: "failed"})
	}
	ids, err := q.RetryDead(ctx, consumer.DeadSelection{IDs: []string{"a", "missing"}})
	if err != nil || len(ids) != 1 || ids[0] != "a" {
		t.Fatalf("RetryDead(a, missing) = %v, %v", ids, err)
	}
	q = reopen(t, q, cfg)
	d := receive(t, q)
	if d.ID != "a" || d.Job != "A" || d.Attempt != 1 || string(d.Body) != "pa" || d.Headers["x-h"][0] != "1" || d.Key != "k" {
		t.Errorf("retried job = %+v", d)
	}
	settle(t, d, consumer.Outcome{Action: consumer.Ack})
	dead, err := q.ListDead(ctx, 0)
	if err != nil || len(dead) != 1 || dead[0].Job.ID != "b" || dead[0].Reason != "failed" {
		t.Errorf("dead after retrying a = %+v, %v; want only b", dead, err)
	}
}

func TestParsePermissions(t *testing.T) {
	for in, want := range map[string]boltjobs.Permissions{
		"0644": 0o644, "0o600": 0o600, "755": 0o755, "0": 0, "493": 0o755, "0777": 0o777,
	} {
		if got, err := boltjobs.ParsePermissions(in); got != want || err != nil {
			t.Errorf("ParsePermissions(%q) = %o, %v; want %o", in, got, err, want)
		}
	}
	for _, in := range []string{"0999", "1000", "rw", "-1", "0o1000"} {
		if got, err := boltjobs.ParsePermissions(in); err == nil {
			t.Errorf("ParsePermissions(%q) = %o, want an error", in, got)
		}
	}
}
