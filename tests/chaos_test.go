package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// Settings of the chaos run. exec_ttl must stay far above what an ack job
// takes on a loaded 2-core machine, and low enough that the jobs it ends
// cost seconds, not minutes.
const (
	chaosWorkers     = 4
	chaosMaxAttempts = 5
	chaosGoodJobs    = 2900 // "ack" jobs besides the faulty ones
	chaosJobMillis   = "3"  // each ack job's sleep, so the kills land mid-run
	chaosKillEvery   = 200 * time.Millisecond
	chaosKillFor     = 20 * time.Second // the kill loop stops earlier once every job settled
)

// chaosFaults is how many jobs of each faulty kind of
// testdata/workers/chaos.php are spread through the run; each misbehaves on
// its first attempt and acks on the next.
var chaosFaults = []struct {
	name  string
	count int
}{
	{"garbage", 5},
	{"truncated", 5},
	{"bad-header", 5},
	{"huge-length", 2},
	{"close-stdout", 5},
	{"orphan", 4},
	{"hang", 2},
	{"bloat", 3},
}

// Jobs named always-crash take their worker down on every attempt: they
// are the only jobs that may end dead, after chaosMaxAttempts attempts.
const chaosDeadly = 3

// The poison burst: this many crash jobs pushed one after another.
const chaosBurst = 20

// TestChaosWorkerFaults runs a few thousand jobs through the binary on the
// memory driver while a worker is killed with SIGKILL every 200 ms and
// jobs make their worker write garbage, half a frame, a header with a bad
// length, a header announcing 2 GiB, close its stdout and keep running,
// leave an orphan holding its stdout, hang past exec_ttl, bloat past
// max_worker_memory, and crash 20 times in a row. By job id: every job's
// last run acked and nothing ran after an ack was written, no delivery ran
// twice, exactly the jobs built to fail every time are dead; the pool was
// never left without a worker for 5 s (crashes caused by jobs are
// replaced at once, not after a respawn backoff), and at the end it is at
// full size and /health answers 200.
func TestChaosWorkerFaults(t *testing.T) {
	requireTool(t, "php")
	requireTool(t, "setsid")
	log := filepath.Join(t.TempDir(), "jobs.log")
	statusAddr := freeAddr(t)
	cfg := e2eConfigPool(t, "php tests/testdata/workers/chaos.php", log,
		fmt.Sprintf(`    num_workers: %d
    supervisor:
      watch_tick: 100ms
      exec_ttl: 2s
      max_worker_memory: 100
`, chaosWorkers),
		"status:\n  address: "+statusAddr+"\n",
		fmt.Sprintf(`      driver: memory
      retry:
        max_attempts: %d
        backoff: {initial: 50ms, max: 400ms, multiplier: 2, jitter: 0}
`, chaosMaxAttempts))
	t.Cleanup(func() { killOrphans(t, log) })
	s := startConsuming(t, cfg)
	waitHealth(t, statusAddr, 30*time.Second)

	jobs := chaosJobs()
	var good, deadly []string
	for _, j := range jobs {
		if j.Name == "always-crash" {
			deadly = append(deadly, j.ID)
		} else {
			good = append(good, j.ID)
		}
	}

	k := &killer{addr: s.rpcAddr(), killed: map[int]bool{}}
	ctx, stop := context.WithTimeout(context.Background(), chaosKillFor)
	var wg sync.WaitGroup
	wg.Go(func() { k.run(ctx) })
	stopKiller := sync.OnceFunc(func() { stop(); wg.Wait() })
	t.Cleanup(stopKiller)

	started := time.Now()
	s.rpcPush(jobs, 100)
	st := s.waitStat("default", 100*time.Second, func(st pipelineStat) bool {
		return st.Acked+st.Dead >= uint64(len(jobs))
	})
	settled := time.Since(started)
	stopKiller()
	if k.err != nil {
		t.Fatalf("kill loop: %v", k.err)
	}
	t.Logf("%d jobs settled in %s; %d workers killed with SIGKILL (%d mid-job); longest without a worker %s; stat %+v",
		len(jobs), settled.Round(time.Millisecond), len(k.killed), k.midJob, k.longestEmpty, st)
	// While the poison burst runs, each new worker takes the next crash
	// job and dies: the pool is empty for about 20 worker starts (1.5 s
	// seen here). Had each crash counted toward the respawn backoff, it
	// would be empty for many seconds (over 10 s seen).
	if k.longestEmpty >= 5*time.Second {
		t.Fatalf("the pool had no worker ready or working for %s", k.longestEmpty)
	}
	if k.midJob < 5 {
		t.Fatalf("only %d workers were killed while running a job: the run was not chaotic", k.midJob)
	}
	if st.Acked != uint64(len(good)) || st.Dead != uint64(len(deadly)) {
		t.Fatalf("want %d acked and %d dead, got %+v", len(good), len(deadly), st)
	}

	checkChaosLog(t, readLines(t, log), good, deadly, k.killed)
	waitFullPool(t, s, chaosWorkers, 30*time.Second)
	if st := s.stat("default"); st.Ready != 0 || st.Active != 0 || st.Delayed != 0 || st.Acked != uint64(len(good)) || st.Dead != uint64(len(deadly)) {
		t.Fatalf("jobs left, or settled again, after the run: %+v", st)
	}
	if code, body := httpGet(t, "http://"+statusAddr+"/health"); code != 200 {
		t.Fatalf("/health after the run: %d %q", code, body)
	}
}

// chaosJobs returns the jobs of the run in push order: the faulty ones
// spread evenly among the ack jobs, and the poison burst in one block.
func chaosJobs() []consumer.Job {
	job := func(id, name, payload string) consumer.Job {
		return consumer.Job{ID: id, Name: name, Pipeline: "default", Payload: []byte(payload)}
	}
	var faulty []consumer.Job
	for _, f := range chaosFaults {
		for i := range f.count {
			faulty = append(faulty, job(fmt.Sprintf("%s-%d", f.name, i), f.name, "x"))
		}
	}
	for i := range chaosDeadly {
		faulty = append(faulty, job(fmt.Sprintf("always-crash-%d", i), "always-crash", "x"))
	}
	// Interleave the kinds, so no two faults of a kind run side by side.
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(faulty), func(i, j int) { faulty[i], faulty[j] = faulty[j], faulty[i] })

	every := chaosGoodJobs / (len(faulty) + 1)
	var jobs []consumer.Job
	for i := range chaosGoodJobs {
		if i == chaosGoodJobs*2/5 {
			for b := range chaosBurst {
				jobs = append(jobs, job(fmt.Sprintf("crash-%02d", b), "crash", "x"))
			}
		}
		if i > 0 && i%every == 0 && len(faulty) > 0 {
			jobs = append(jobs, faulty[0])
			faulty = faulty[1:]
		}
		jobs = append(jobs, job(fmt.Sprintf("ack-%04d", i), "ack", chaosJobMillis))
	}
	return append(jobs, faulty...)
}

// isFaulty reports whether a job id is one of the misbehaving jobs, which
// the kill loop leaves alone so that their fault really happens.
func isFaulty(id string) bool {
	return id != "" && !strings.HasPrefix(id, "ack-")
}

// killer sends SIGKILL to a random worker every chaosKillEvery: one that
// is ready or running an ack job (not one stopping, nor one running a
// faulty job, whose fault must get its chance).
type killer struct {
	addr string
	// Written by run, read after it returned.
	killed map[int]bool // pids killed
	midJob int          // kills of a worker running a job
	// longestEmpty is the longest the pool was seen with no worker ready
	// or working (between the first and last listing that saw it so).
	longestEmpty time.Duration
	err          error
}

func (k *killer) run(ctx context.Context) {
	cl, err := rpc.Dial(ctx, k.addr)
	if err != nil {
		k.err = err
		return
	}
	defer cl.Close()
	tick := time.NewTicker(chaosKillEvery)
	defer tick.Stop()
	rnd := rand.New(rand.NewPCG(3, 4))
	var emptySince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ws, err := cl.Workers(ctx)
		if err != nil {
			if ctx.Err() == nil {
				k.err = fmt.Errorf("listing workers: %w", err)
			}
			return
		}
		ws = slices.DeleteFunc(ws, func(w rpc.WorkerInfo) bool { return w.State != "ready" && w.State != "working" })
		if len(ws) == 0 {
			if emptySince.IsZero() {
				emptySince = time.Now()
			}
			k.longestEmpty = max(k.longestEmpty, time.Since(emptySince))
			continue
		}
		emptySince = time.Time{}
		ws = slices.DeleteFunc(ws, func(w rpc.WorkerInfo) bool { return isFaulty(w.CurrentJob) || k.killed[w.Pid] })
		if len(ws) == 0 {
			continue
		}
		w := ws[rnd.IntN(len(ws))]
		if err := syscall.Kill(w.Pid, syscall.SIGKILL); err != nil {
			continue // it left meanwhile
		}
		k.killed[w.Pid] = true
		if w.CurrentJob != "" {
			k.midJob++
		}
	}
}

// chaosRun is one delivery of a job as chaos.php logged it.
type chaosRun struct {
	attempt int
	pid     int
	name    string
	fault   bool // it logged the fault line
	ack     bool // it logged that it would ack
	done    bool // it logged that the ack was written
	line    int  // index of its start line
	endLine int  // index of its last line
}

// checkChaosLog checks the worker log of the run by job id: good jobs
// were acked by their last delivery and nothing ran after an ack was
// written; the deadly ones ran up to the attempt cap and never acked; no
// delivery ran twice; each kind of fault really happened (in a worker the
// test did not kill); a worker that bloated ran no job after that, and
// one that closed its stdout was killed for it within a second, long
// before exec_ttl.
func checkChaosLog(t *testing.T, lines []string, good, deadly []string, killed map[int]bool) {
	t.Helper()
	runs := map[string][]*chaosRun{} // by id, in attempt order
	byAttempt := map[string]*chaosRun{}
	lastStartOf := map[int]int{} // pid -> line of the last start in it
	for i, l := range lines {
		f := strings.Fields(l)
		if f[0] == "child" {
			continue
		}
		if len(f) < 3 {
			t.Fatalf("bad log line %q", l)
		}
		id := f[1]
		attempt, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("bad log line %q", l)
		}
		key := id + " " + f[2]
		r := byAttempt[key]
		if f[0] == "start" {
			if r != nil {
				t.Errorf("delivery %d of %s ran twice (line %d and %d)", attempt, id, r.line, i)
			}
			pid, _ := strconv.Atoi(f[3])
			r = &chaosRun{attempt: attempt, pid: pid, name: f[4], line: i}
			byAttempt[key] = r
			runs[id] = append(runs[id], r)
			lastStartOf[pid] = i
			continue
		}
		if r == nil {
			t.Fatalf("log line %q before its start line", l)
		}
		r.endLine = i
		switch f[0] {
		case "fault":
			r.fault = true
		case "ack":
			r.ack = true
		case "done":
			r.done = true
		case "alive":
			t.Errorf("job %s: worker %d still ran 1s after it closed its stdout (exec_ttl 2s): its stdout's end went unseen", id, r.pid)
		}
	}

	for _, rs := range runs {
		slices.SortFunc(rs, func(a, b *chaosRun) int { return a.attempt - b.attempt })
	}
	for _, id := range good {
		rs := runs[id]
		if len(rs) == 0 {
			t.Errorf("job %s never ran", id)
			continue
		}
		last := rs[len(rs)-1]
		if !last.ack {
			t.Errorf("job %s: its last delivery (attempt %d of %d) did not ack", id, last.attempt, len(rs))
		}
		if !last.done && !killed[last.pid] {
			t.Errorf("job %s: its last delivery (attempt %d) did not write its ack, and the test did not kill worker %d", id, last.attempt, last.pid)
		}
		for _, r := range rs[:len(rs)-1] {
			switch {
			case r.done:
				t.Errorf("job %s ran again (attempt %d) after attempt %d wrote its ack", id, last.attempt, r.attempt)
			case r.ack && !killed[r.pid]:
				t.Errorf("job %s: attempt %d was about to ack in worker %d, which the test did not kill, yet it ran again", id, r.attempt, r.pid)
			}
		}
	}
	for _, id := range deadly {
		rs := runs[id]
		for _, r := range rs {
			if r.ack {
				t.Errorf("always-crash job %s acked on attempt %d", id, r.attempt)
			}
		}
		if n := len(rs); n == 0 || rs[n-1].attempt != chaosMaxAttempts {
			t.Errorf("always-crash job %s: want it tried up to attempt %d, got %d runs", id, chaosMaxAttempts, n)
		}
	}

	// Each fault really happened in a worker the test did not kill.
	happened := map[string]int{}
	for _, rs := range runs {
		for _, r := range rs {
			if !r.fault || killed[r.pid] {
				continue
			}
			happened[r.name]++
			if r.name == "bloat" && lastStartOf[r.pid] != r.line {
				t.Errorf("worker %d ran another job after it held 160 MiB (max_worker_memory 100)", r.pid)
			}
		}
	}
	for _, f := range chaosFaults {
		if happened[f.name] == 0 {
			t.Errorf("no %s fault happened outside a killed worker", f.name)
		}
	}
	if happened["crash"] < chaosBurst/2 {
		t.Errorf("only %d of the %d poison jobs crashed their worker", happened["crash"], chaosBurst)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// waitFullPool waits until `workers --json` lists exactly n workers, each
// ready or working and alive.
func waitFullPool(t *testing.T, s *supervisor, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := s.mustCLI("workers", "--json")
		var ws []struct {
			Pid   int    `json:"pid"`
			State string `json:"state"`
		}
		if err := json.Unmarshal([]byte(out), &ws); err != nil {
			t.Fatalf("workers --json: %v in %q", err, out)
		}
		live := 0
		for _, w := range ws {
			if (w.State == "ready" || w.State == "working") && syscall.Kill(w.Pid, 0) == nil {
				live++
			}
		}
		if live == n && len(ws) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool not at its size %d %s after the run: %s", n, timeout, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHealth waits until /health answers 200.
func waitHealth(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, "http://"+addr+"/health")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health: %d %q after %s", code, body, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killOrphans kills the `sleep 30` children the orphan jobs left in their
// own sessions (the pool's SIGKILL to a worker's group does not reach
// them), checking the pid still runs that command.
func killOrphans(t *testing.T, log string) {
	for _, l := range readLines(t, log) {
		f := strings.Fields(l)
		if f[0] != "child" || len(f) != 3 {
			continue
		}
		pid, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) == "sleep\x0030\x00" {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
