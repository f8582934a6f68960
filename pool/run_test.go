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

// result is what Run reported for one job.
type result struct {
	out frame.Payload
	err error
}

// execBatch runs pls through p.Run and returns each job's result, failing
// the test if a job has no result time or the times go backwards, or if
// the pool still holds a worker for the batch after Run returned.
func execBatch(t *testing.T, ctx context.Context, p *Pool, pls []frame.Payload) []result {
	t.Helper()
	res := make([]Result, len(pls))
	p.Run(ctx, ctx, pls, res)
	out := make([]result, len(pls))
	for i, r := range res {
		if r.At.IsZero() {
			t.Errorf("job %d: no result time", i)
		}
		if i > 0 && r.At.Before(res[i-1].At) {
			t.Errorf("job %d: result at %v, before job %d's", i, r.At, i-1)
		}
		out[i] = result{r.Out, r.Err}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.all {
		if w.state == stateWorking {
			t.Errorf("worker %d still working after Run returned", w.pid)
		}
	}
	return out
}

// jobs returns n echo jobs whose bodies are "body-<i>".
func jobs(n int) []frame.Payload {
	pls := make([]frame.Payload, n)
	for i := range pls {
		pls[i] = job(fmt.Sprint(i), fmt.Sprintf("body-%d", i))
	}
	return pls
}

func TestRunRunsEveryJobOnOneWorker(t *testing.T) {
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
func TestRunFramesLargerThanTheWindow(t *testing.T) {
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
func TestRunWorkerExitingBetweenJobsLosesNone(t *testing.T) {
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
func TestRunCrashFailsOnlyTheRunningJob(t *testing.T) {
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
func TestRunWorkerAskingToStop(t *testing.T) {
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
func TestRunWorkerWithoutStdin(t *testing.T) {
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
func TestRunExecTTLPerJob(t *testing.T) {
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
func TestRunMaxJobs(t *testing.T) {
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
func TestRunCtxEnds(t *testing.T) {
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

// In poller mode, a deadline an earlier job left on the pipes does not
// fail a batch run without one.
func TestRunNoStaleDeadline(t *testing.T) {
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
