package pool

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/internal/fakeworker"
)

// result is what ExecBatch reported for one job.
type result struct {
	out   frame.Payload
	err   error
	calls int
}

// execBatch runs pls through p.ExecBatch and returns what done got for
// each job, failing the test if done was not called exactly once per job
// in order.
func execBatch(t *testing.T, ctx context.Context, p *Pool, pls []frame.Payload) []result {
	t.Helper()
	res := make([]result, len(pls))
	next := 0
	p.ExecBatch(ctx, pls, func(i int, out frame.Payload, err error) {
		if i != next {
			t.Errorf("done(%d) called when %d was expected", i, next)
		}
		next = i + 1
		res[i].out, res[i].err = out, err
		res[i].calls++
	})
	for i, r := range res {
		if r.calls != 1 {
			t.Errorf("job %d: done called %d times", i, r.calls)
		}
	}
	return res
}

// jobs returns n echo jobs whose bodies are "body-<i>".
func jobs(n int) []frame.Payload {
	pls := make([]frame.Payload, n)
	for i := range pls {
		pls[i] = job(fmt.Sprint(i), fmt.Sprintf("body-%d", i))
	}
	return pls
}

func TestExecBatchRunsEveryJobOnOneWorker(t *testing.T) {
	cfg := fakeConfig("echo", 1)
	cfg.Pipelining = 8
	p := start(t, cfg, nil)
	for _, n := range []int{1, 5, 8, 20} {
		res := execBatch(t, context.Background(), p, jobs(n))
		for i, r := range res {
			if r.err != nil || string(r.out.Body) != fmt.Sprintf("body-%d", i) {
				t.Fatalf("%d jobs: job %d = %q, %v; want its own echo", n, i, r.out.Body, r.err)
			}
		}
	}
	ws := p.Workers()
	if len(ws) != 1 || ws[0].Jobs != 34 {
		t.Fatalf("workers %+v, want one that ran 34 jobs", ws)
	}
}

// Frames larger than the window go one at a time; none is lost or
// mixed up.
func TestExecBatchFramesLargerThanTheWindow(t *testing.T) {
	cfg := fakeConfig("echo", 1)
	cfg.Pipelining = 16
	p := start(t, cfg, nil)
	pls := make([]frame.Payload, 12)
	for i := range pls {
		pls[i] = job(fmt.Sprint(i), strings.Repeat(string(rune('a'+i)), 1500*(i%4)+10))
	}
	for i, r := range execBatch(t, context.Background(), p, pls) {
		if r.err != nil || string(r.out.Body) != string(pls[i].Body) {
			t.Fatalf("job %d: %d bytes back, %v; want its %d bytes", i, len(r.out.Body), r.err, len(pls[i].Body))
		}
	}
}

// A worker that exits on its own after a reply (PHP workers that end
// after so many jobs) leaves the jobs written behind it unread: they run
// on another worker, without an error.
func TestExecBatchWorkerExitingBetweenJobsLosesNone(t *testing.T) {
	cfg := fakeConfig("die-after", 2)
	cfg.Env["FAKEWORKER_N"] = "3"
	cfg.Pipelining = 8
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, r := range execBatch(t, ctx, p, jobs(20)) {
		if r.err != nil {
			t.Fatalf("job %d: %v; a job the worker never read must run elsewhere", i, r.err)
		}
	}
}

// A crash fails the job that was running and only that one; the jobs
// written behind it run elsewhere.
func TestExecBatchCrashFailsOnlyTheRunningJob(t *testing.T) {
	cfg := fakeConfig("crash-after", 1)
	cfg.Env["FAKEWORKER_N"] = "3"
	cfg.Env["FAKEWORKER_ONCE_FILE"] = filepath.Join(t.TempDir(), "once")
	cfg.Pipelining = 8
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := execBatch(t, ctx, p, jobs(8))
	for i, r := range res {
		switch {
		case i == 2:
			var we *WorkerError
			if !errors.As(r.err, &we) || !errors.Is(r.err, ErrWorkerCrashed) {
				t.Errorf("job 2 (the one it crashed in): %v, want a WorkerError", r.err)
			}
		case r.err != nil || string(r.out.Body) != fmt.Sprintf("body-%d", i):
			t.Errorf("job %d: %q, %v; want its echo", i, r.out.Body, r.err)
		}
	}
}

// A worker that asks to stop runs neither that job nor the ones behind
// it; all of them run on its replacement.
func TestExecBatchWorkerAskingToStop(t *testing.T) {
	cfg := fakeConfig("ask-stop", 1)
	cfg.Env["FAKEWORKER_ONCE_FILE"] = filepath.Join(t.TempDir(), "once")
	cfg.Pipelining = 8
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, r := range execBatch(t, ctx, p, jobs(6)) {
		if r.err != nil || string(r.out.Body) != fakeworker.AckBody {
			t.Fatalf("job %d: %q, %v; want the replacement's ack", i, r.out.Body, r.err)
		}
	}
}

// A worker whose stdin has no reader gets none of the batch.
func TestExecBatchWorkerWithoutStdin(t *testing.T) {
	cfg := fakeConfig("deaf-after-boot", 2)
	cfg.Env["FAKEWORKER_ONCE_FILE"] = filepath.Join(t.TempDir(), "once")
	cfg.Pipelining = 4
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 { // the first batch may go to the healthy worker
		for i, r := range execBatch(t, ctx, p, jobs(4)) {
			if r.err != nil {
				t.Fatalf("job %d: %v", i, r.err)
			}
		}
	}
}

// exec_ttl counts for each job from the reply before it: four jobs of
// 150ms each pass an exec_ttl of 400ms, one of 2s does not, and the job
// behind it runs elsewhere.
func TestExecBatchExecTTLPerJob(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Pipelining = 8
	cfg.Supervisor.ExecTTL = 400 * time.Millisecond
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pls := []frame.Payload{job("1", "150ms"), job("2", "150ms"), job("3", "150ms"), job("4", "150ms"), job("5", "2s"), job("6", "10ms")}
	res := execBatch(t, ctx, p, pls)
	for i, r := range res {
		if i == 4 {
			mustBe(t, r.err, ErrExecTimeout)
			continue
		}
		if r.err != nil {
			t.Errorf("job %d: %v", i+1, r.err)
		}
	}
}

// max_jobs holds within a batch: a worker runs at most max_jobs jobs.
func TestExecBatchMaxJobs(t *testing.T) {
	log := filepath.Join(t.TempDir(), "starts")
	cfg := fakeConfig("echo", 1)
	cfg.Env["FAKEWORKER_LOG"] = log
	cfg.Pipelining = 8
	cfg.MaxJobs = 3
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, r := range execBatch(t, ctx, p, jobs(10)) {
		if r.err != nil {
			t.Fatalf("job %d: %v", i, r.err)
		}
	}
	// 10 jobs at 3 per worker: 4 workers ran them (3+3+3+1). A batch
	// that overran max_jobs would have needed fewer.
	eventually(t, 5*time.Second, "the fourth worker", func() bool { return lines(t, log) >= 4 })
	time.Sleep(200 * time.Millisecond)
	if n := lines(t, log); n != 4 {
		t.Errorf("%d workers started, want 4", n)
	}
	for _, w := range p.Workers() {
		if w.Jobs > 3 {
			t.Errorf("worker %d ran %d jobs, max_jobs is 3", w.Pid, w.Jobs)
		}
	}
}

// A ctx that ends mid-batch interrupts the running job; the jobs behind
// it are not sent anywhere.
func TestExecBatchCtxEnds(t *testing.T) {
	cfg := fakeConfig("slow", 1)
	cfg.Pipelining = 4
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := execBatch(t, ctx, p, []frame.Payload{job("1", "10ms"), job("2", "5s"), job("3", "10ms"), job("4", "10ms")})
	if res[0].err != nil {
		t.Errorf("job 1: %v", res[0].err)
	}
	mustBe(t, res[1].err, ErrExecTimeout)
	for _, r := range res[2:] {
		mustBe(t, r.err, ErrNoWorker)
	}
}

// A slow settle of one job (done) does not count against the exec_ttl of
// the job behind it, which answered in time.
func TestExecBatchSlowSettleIsNotTheNextJobsTime(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprint("poll=", poll), func(t *testing.T) {
			cfg := fakeConfig("slow", 1)
			cfg.Pipelining = 2
			cfg.pollStdout = poll
			cfg.Supervisor.ExecTTL = 200 * time.Millisecond
			p := start(t, cfg, nil)
			var errs [2]error
			p.ExecBatch(context.Background(), []frame.Payload{job("0", "1ms"), job("1", "50ms")}, func(i int, _ frame.Payload, err error) {
				errs[i] = err
				if i == 0 {
					time.Sleep(500 * time.Millisecond) // a slow Settle
				}
			})
			for i, err := range errs {
				if err != nil {
					t.Errorf("job %d: %v", i, err)
				}
			}
		})
	}
}

// A worker that answers the last job it takes and exits cleanly while the
// job before is being settled slowly: the answer is kept, and the exit is
// no failure for the respawn backoff.
func TestExecBatchCleanExitDuringASlowSettle(t *testing.T) {
	cfg := fakeConfig("die-after", 1)
	cfg.Env["FAKEWORKER_N"] = "2"
	cfg.Pipelining = 3
	cfg.steadyAfter = time.Minute
	p := start(t, cfg, nil)
	for round := range 3 {
		var errs [3]error
		p.ExecBatch(context.Background(), jobs(3), func(i int, _ frame.Payload, err error) {
			errs[i] = err
			if i == 0 {
				time.Sleep(400 * time.Millisecond)
			}
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, job %d: %v", round, i, err)
			}
		}
		p.mu.Lock()
		failures := p.failures
		p.mu.Unlock()
		if failures != 0 {
			t.Fatalf("round %d: failures = %d, want 0 (clean exits)", round, failures)
		}
	}
}

// In poller mode, a deadline an earlier job left on the pipes does not
// fail a batch run without one.
func TestExecBatchNoStaleDeadline(t *testing.T) {
	cfg := fakeConfig("echo", 1)
	cfg.Pipelining = 4
	cfg.pollStdout = true
	p := start(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if _, err := p.Exec(ctx, job("a", "x")); err != nil {
		t.Fatal(err)
	}
	res := execBatch(t, ctx, p, jobs(3))
	cancel()
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("batch under the deadline, job %d: %v", i, r.err)
		}
	}
	time.Sleep(200 * time.Millisecond) // past that deadline
	for i, r := range execBatch(t, context.Background(), p, jobs(3)) {
		if r.err != nil {
			t.Errorf("job %d: %v", i, r.err)
		}
	}
}
