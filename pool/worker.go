package pool

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// state is where a worker is in its life.
type state uint8

const (
	stateStarting state = iota // spawned, not yet in the pool
	stateReady                 // idle, in Pool.idle
	stateWorking               // running a job
	stateStopping              // retired: being stopped, no new jobs
	stateDead                  // process exited
)

func (s state) String() string {
	switch s {
	case stateStarting:
		return "starting"
	case stateReady:
		return "ready"
	case stateWorking:
		return "working"
	case stateStopping:
		return "stopping"
	default:
		return "dead"
	}
}

// canMove reports whether a worker may go from one state to another:
//
//	starting -> ready, working, stopping, dead
//	ready    -> working, stopping, dead
//	working  -> ready, working (handed straight to a waiting job), stopping, dead
//	stopping -> dead
//
// and nothing leaves dead.
func canMove(from, to state) bool {
	switch from {
	case stateStarting, stateWorking:
		return to != stateStarting
	case stateReady:
		return to == stateWorking || to == stateStopping || to == stateDead
	case stateStopping:
		return to == stateDead
	}
	return false
}

// move is the one place a worker changes state. Called with p.mu held.
// An illegal transition (see canMove) is a bug in the pool: move panics.
//
// Leaving a state undoes what entering it did, and entering one does its
// bookkeeping:
//   - leaving starting (for anything but dead): w joins p.all (broadcast);
//     into ready or working it is counted (it takes the slot in p.live
//     its spawner reserved);
//   - ready: w is in p.idle exactly while ready;
//   - leaving working: its job and its ctx watch end; a job that let go
//     of a worker whose process exited mid-job tells the reaper
//     (released). assign is the way into working: it records the job;
//   - entering stopping: why, when set, is recorded as the retirement,
//     and w is uncounted (the spawner replaces it);
//   - entering dead: uncounted, out of p.all (broadcast).
//
// The process is not touched: stopping, killing or closing it is the
// caller's.
func (p *Pool) move(w *worker, to state, why retirement) {
	from := w.state
	if !canMove(from, to) {
		panic(fmt.Sprintf("pool: worker %d: illegal transition %s -> %s", w.pid, from, to))
	}
	switch from {
	case stateStarting:
		if to != stateDead {
			p.all = append(p.all, w)
			p.broadcast()
		}
		if to == stateReady || to == stateWorking {
			w.counted = true
		}
	case stateReady:
		p.dropIdle(w)
	case stateWorking:
		w.setJob(nil)
		p.unwatchLocked(w)
		if w.goneMidJob && to != stateWorking {
			w.released <- struct{}{}
		}
	}
	w.state = to
	switch to {
	case stateReady:
		p.idle = append(p.idle, w)
	case stateStopping:
		if why.set() {
			w.retire = why
		}
		p.uncount(w)
	case stateDead:
		p.uncount(w)
		if i := slices.Index(p.all, w); i >= 0 {
			p.all = slices.Delete(p.all, i, i+1)
		}
		p.broadcast()
	}
}

// assign moves w to working for a job under ctx whose context JSON is
// jobCtx (Workers shows it; ctx ending interrupts w). Called with p.mu
// held.
func (p *Pool) assign(w *worker, ctx context.Context, jobCtx []byte) {
	p.move(w, stateWorking, retirement{})
	w.setJob(jobCtx)
	p.watchLocked(ctx, w)
}

// dropIdle takes w out of p.idle: at once when it is the last or the
// first entry, the ones take hands out. Called with p.mu held.
func (p *Pool) dropIdle(w *worker) {
	if n := len(p.idle); n > 0 && p.idle[n-1] == w {
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		return
	}
	if i := slices.Index(p.idle, w); i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
}

// worker is one worker process as the pool schedules it: its process and
// the scheduling fields. The fields after the comment are guarded by
// Pool.mu; the others are set at spawn or owned by whoever holds the
// worker (the job running on it, or the goroutine stopping it).
type worker struct {
	proc     process
	pid      int // proc.id()
	created  time.Time
	buf      []byte        // frame buffer reused by every job
	opt      [1]uint32     // option 0 of the job frame
	released chan struct{} // cap 1: a job let go of a worker whose process exited mid-job

	// guarded by Pool.mu
	state      state
	counted    bool       // counts toward Pool.live
	retire     retirement // set: replace after the current job, and why
	jobs       uint64
	lastUsed   time.Time
	cur        []byte          // context JSON of the running job (CurrentJob); set with setJob
	curSince   time.Time       // when cur was handed to the worker
	done       <-chan struct{} // Done of the running job's ctx (see watchLocked)
	goneMidJob bool            // the process exited while a job was running
}

// setJob records the job w runs now (its context JSON, nil for none) and
// when it got it, for Workers. Called with Pool.mu held.
func (w *worker) setJob(jobCtx []byte) {
	w.cur = jobCtx
	if jobCtx == nil {
		w.curSince = time.Time{}
		return
	}
	w.curSince = time.Now()
}

// markRetire marks w, busy with a job, to leave service for r once the
// job is over; the first reason given wins. Called with Pool.mu held.
func (w *worker) markRetire(r retirement) {
	if !w.retire.set() {
		w.retire = r
	}
}

// retirement says why a worker leaves service on purpose: the reason
// reported to the Observer, and a detail for the log. The zero value
// means the worker is not retiring.
type retirement struct {
	reason ExitReason
	detail string
}

// set reports whether r is a retirement (not the zero value).
func (r retirement) set() bool { return r.reason != "" }

// Retirements with a fixed detail.
var (
	retireStopRequested = retirement{ExitStopRequested, "the worker asked to stop"}
	retireMaxJobs       = retirement{ExitMaxJobs, "max_jobs"}
	retireReset         = retirement{ExitReset, "reset"}
	retireScaleDown     = retirement{ExitScaleDown, "idle past idle_timeout above the minimum size"}
	// retireStrayOutput retires a worker that wrote to stdout when no
	// job was waiting for a reply: those bytes would be read as the reply
	// of the next job, which would fail for nothing.
	retireStrayOutput = retirement{ExitStrayOutput, "wrote to stdout after its reply"}
	// retireInterrupted: the worker answered, but a byte of ours may be
	// in its stdout.
	retireInterrupted  = retirement{ExitOther, "interrupted after its reply"}
	retirePoolStopping = retirement{ExitOther, "pool stopping"}
)

// launchProc starts a worker process for the pool's command, without its
// handshake. It is Pool.launch unless a test replaces it.
func (p *Pool) launchProc() (process, error) {
	pr, err := startProc(p.cfg.Command, p.env, p.cfg.pollStdout, p.log)
	if err != nil {
		return nil, fmt.Errorf("pool: start worker %s: %w", p.cmdline, err)
	}
	return pr, nil
}

// spawn starts one worker (state starting, not yet in the pool) and runs
// its pid handshake, bounded by AllocateTimeout and ctx; its reaper runs
// from the start. On failure the process is killed and reaped and the
// error names the command and quotes the worker's stderr.
func (p *Pool) spawn(ctx context.Context) (*worker, error) {
	pr, err := p.launch()
	if err != nil {
		return nil, err
	}
	w := &worker{proc: pr, pid: pr.id(), created: time.Now(), released: make(chan struct{}, 1)}
	w.lastUsed = w.created
	p.wg.Go(func() {
		pr.wait()
		p.reaped(w)
	})
	if err := pr.handshake(ctx, p.cfg.AllocateTimeout, cmp.Or(p.cfg.slowHandshake, defaultSlowHandshake), p.log); err != nil {
		pr.kill()
		<-pr.exited()
		pr.close()
		return nil, fmt.Errorf("pool: worker %s (pid %d) did not start: %w%s", p.cmdline, w.pid, err, describeExit(pr.exitInfo().status, pr.stderrTail()))
	}
	return w, nil
}

// reaped takes w, whose process was reaped, out of the pool. If a job is
// running on it, the job gets exitGrace to read what the worker wrote
// before its read is interrupted, and w leaves once the job let go of it.
func (p *Pool) reaped(w *worker) {
	p.mu.Lock()
	why := p.exitReason(w)
	busy := w.state == stateWorking
	if busy {
		w.goneMidJob = true
	} else {
		p.forget(w)
	}
	p.mu.Unlock()
	p.observeExit(why)
	if !busy {
		return
	}
	// The job may be busy elsewhere (settling a job of its batch) with a
	// reply still to read: interrupt only a read that has waited a whole
	// grace without an end (a grandchild holds stdout).
	t := time.NewTicker(exitGrace)
	for waiting := true; waiting; {
		select {
		case <-w.released:
			waiting = false
		case <-t.C:
			if w.proc.readingReply() {
				w.proc.interrupt()
				<-w.released
				waiting = false
			}
		}
	}
	t.Stop()
	p.mu.Lock()
	p.forget(w)
	p.mu.Unlock()
}

// stopWorker stops a retired worker (state stopping, not in use): a stop
// frame, then up to DestroyTimeout for it to exit (less if Stop runs out
// of time), then SIGKILL to its process group. It returns once the
// process is reaped.
func (p *Pool) stopWorker(w *worker, why string) {
	p.log.Debug("stopping worker", "pid", w.pid, "reason", why)
	if w.proc.stop(p.stopFrame, p.cfg.DestroyTimeout, p.killNow) {
		p.log.Warn("worker ignored the stop frame and was killed", "pid", w.pid, "destroy_timeout", p.cfg.DestroyTimeout)
	}
}
