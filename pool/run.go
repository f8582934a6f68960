package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipevisor/pipevisor/frame"
)

// MaxPipelining is the largest Config.Pipelining the pool honours.
const MaxPipelining = 64

// pipeWindow bounds the bytes of job frames written to a worker and not
// yet answered, so that a write never waits for the worker, which may
// itself be waiting for its reply to be read. That holds in a pipe of at
// least minWindowPipe bytes (unread bytes span at most two of its pages,
// a write of up to a page needs at most two more). A frame larger than
// the window is written only when nothing else is in flight, as Exec
// does; so is every frame to a worker whose stdin pipe is smaller (the
// kernel gives one-page pipes to a user past pipe-user-pages-soft).
const (
	pipeWindow    = 4096
	minWindowPipe = 4 * 4096
)

// writeAheadWindow returns the window for a worker whose stdin pipe has
// the write end f: pipeWindow, or 0 when the pipe is too small and
// cannot be grown.
func writeAheadWindow(f *os.File) int {
	sc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	size := 0
	_ = sc.Control(func(fd uintptr) {
		size, _ = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
		if size < minWindowPipe {
			if n, err := unix.FcntlInt(fd, unix.F_SETPIPE_SZ, minWindowPipe); err == nil {
				size = n
			}
		}
	})
	if size < minWindowPipe {
		return 0
	}
	return pipeWindow
}

// execFrameSize is the size of the job frame of pl (one option).
func execFrameSize(pl frame.Payload) int {
	return frame.HeaderSize + 4 + len(pl.Context) + len(pl.Body)
}

// Result is what one job came to: the worker's reply, or why there is
// none (the errors are Exec's).
type Result struct {
	Out frame.Payload
	Err error
	// At is when the result was known (the reply read, or the failure
	// seen): the job's run ends there.
	At time.Time
}

// Exec runs one job: Run with a batch of one. It returns the worker's
// reply split as the job was (option 0 = len(Context), payload = Context
// ‖ Body); the reply's slices are new memory.
func (p *Pool) Exec(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
	pls := [1]frame.Payload{pl}
	var res [1]Result
	p.Run(ctx, ctx, pls[:], res[:])
	return res[0].Out, res[0].Err
}

// Run runs the jobs in pls and sets res[i] (len(res) >= len(pls)) to what
// job i came to. A job not sent to a worker yet when send (or ctx) ends is
// not sent; ctx ending interrupts the jobs running (see the errors). It
// returns once every job has its result and no worker is held: the
// caller settles the jobs after Run, outside the pool.
//
// A worker takes a batch of up to Config.Pipelining jobs (one by
// default): each job frame has option 0 = len(Context) and payload =
// Context ‖ Body. Their frames are written ahead of the replies (as many
// as fit in a small window; the rest follow as replies come), so the
// worker finds its next job waiting instead of sleeping until the pool
// writes it. A free worker is waited for up to AllocateTimeout.
//
// Each job's deadline (exec_ttl, ctx's deadline) counts from when the job
// before it was answered, or from the write for the first. A job the
// worker did not start runs on another worker and costs nothing: the jobs
// behind one that crashed, timed out or was answered with a stop request
// ({"stop":true} and an empty body, which also retires that worker), and
// a job whose frame the worker never read (it exited or closed stdin
// while idle, or left its stdin to a process that does not read it). A
// worker that asks to stop must not run the jobs written behind that job
// (the clients of this project do not).
//
// Errors in res:
//   - ErrNoWorker: no worker in time, or send ended before the job was
//     sent (it wraps send's cause then);
//   - ErrExecTimeout: ExecTTL passed or ctx ended while the job ran; the
//     worker was killed and is replaced;
//   - *WorkerError (wraps ErrWorkerCrashed): the worker died, closed
//     stdout or sent an invalid frame mid-job; killed and replaced;
//   - *JobError: the worker sent an ERROR frame; it stays in the pool;
//   - ErrClosed: the pool is stopping.
//
// pls is not retained after Run returns and must not change while it
// runs.
func (p *Pool) Run(ctx, send context.Context, pls []frame.Payload, res []Result) {
	depth := min(max(p.cfg.Pipelining, 1), MaxPipelining)
	next, fruitless := 0, 0
	for next < len(pls) {
		w, err := p.take(ctx, send, pls[next].Context)
		if err != nil {
			failRest(res[next:len(pls)], err)
			return
		}
		n := min(len(pls)-next, depth)
		if p.cfg.MaxJobs > 0 && n > 1 {
			p.mu.Lock()
			left := p.cfg.MaxJobs - min(w.jobs, p.cfg.MaxJobs)
			p.mu.Unlock()
			n = min(n, int(max(left, 1)))
		}
		k := p.runOn(ctx, send, w, pls[next:next+n], res[next:next+n])
		next += k
		if k > 0 {
			fruitless = 0
			continue
		}
		if fruitless++; fruitless > max(p.cfg.NumWorkers, p.cfg.Scale.Max) {
			failRest(res[next:len(pls)], fmt.Errorf("%w: %d workers in a row asked to stop, had closed stdin or ended without reading the job", ErrNoWorker, fruitless))
			return
		}
	}
}

// failRest gives every job in res the error err.
func failRest(res []Result, err error) {
	now := time.Now()
	for i := range res {
		res[i] = Result{Err: err, At: now}
	}
}

// runOn runs pls on w, which the caller took, and settles w (release or
// discard) before returning. It sets res[i] for the first k jobs and
// returns k; the jobs from k on did not start on w.
func (p *Pool) runOn(ctx, send context.Context, w *worker, pls []frame.Payload, res []Result) int {
	for _, c := range [2]context.Context{send, ctx} {
		if c.Err() == nil {
			continue
		}
		p.release(w, 0, false)
		failRest(res[:len(pls)], fmt.Errorf("%w: job not sent: %w", ErrNoWorker, context.Cause(c)))
		return len(pls)
	}
	// The job path needs the real process (fakes run no jobs).
	pr := w.proc.(*proc)
	var sizes [MaxPipelining]int
	sent, inflight := 0, 0 // frames written; their bytes not yet answered
	b := jobDeadline{p: p, pr: pr, ctx: ctx}
	b.arm(time.Now())
	// write sends the frames that fit in the window, at least one when
	// nothing is in flight.
	write := func() error {
		w.buf = w.buf[:0]
		for sent < len(pls) {
			sz := execFrameSize(pls[sent])
			if inflight > 0 && inflight+sz > pr.window {
				break
			}
			w.opt[0] = uint32(len(pls[sent].Context))
			w.buf = frame.AppendFrame(w.buf, frame.FlagCodecRaw, w.opt[:], pls[sent].Context, pls[sent].Body)
			sizes[sent] = sz
			inflight += sz
			sent++
		}
		if len(w.buf) == 0 {
			return nil
		}
		err := pr.write(w.buf)
		if cap(w.buf) > maxKeptBuf {
			w.buf = nil
		}
		return err
	}
	if err := write(); err != nil {
		b.disarm()
		var started bool
		var ferr error
		if errors.Is(err, syscall.EPIPE) {
			// No reader was left on the worker's stdin.
			ferr = p.fail(ctx, w, err, false)
		} else {
			started, ferr = p.abandon(ctx, w, pr, err, inflight, false)
		}
		if !started && !errors.Is(ferr, ErrClosed) {
			return 0 // the job did not start there
		}
		res[0] = Result{Err: ferr, At: time.Now()}
		return 1
	}
	writeErr := false
	for i := range pls {
		f, err := pr.readFrame()
		b.disarm()
		now := time.Now()
		if err != nil {
			// inflight still counts job i: did it start?
			started, ferr := p.abandon(ctx, w, pr, err, inflight, i > 0)
			if !started && !errors.Is(ferr, ErrClosed) {
				return i
			}
			res[i] = Result{Err: ferr, At: now}
			return i + 1
		}
		inflight -= sizes[i]
		var out frame.Payload
		var jerr, bad error
		switch {
		case f.Flags&frame.FlagError != 0:
			jerr = &JobError{Pid: w.pid, Message: string(f.Payload)}
		case f.Flags&frame.FlagControl != 0:
			bad = fmt.Errorf("%w (%.64q) in reply to a job", frame.ErrUnexpectedControl, f.Payload)
		default:
			if out, bad = frame.SplitReply(f); bad == nil && frame.IsStopReply(out) {
				p.mu.Lock()
				w.markRetire(retireStopRequested)
				p.mu.Unlock()
				p.release(w, i, i > 0)
				return i
			}
		}
		if bad != nil {
			// Job i fails; the job behind it may have started too.
			nextStarted, ferr := p.abandon(ctx, w, pr, bad, inflight, true)
			res[i] = Result{Err: ferr, At: now}
			if i+1 < sent && nextStarted && !errors.Is(ferr, ErrClosed) {
				res[i+1] = Result{Err: ferr, At: now}
				return i + 2
			}
			return i + 1
		}
		res[i] = Result{Out: out, Err: jerr, At: now}
		if i+1 == len(pls) {
			break
		}
		// Top up the pipe, so the worker has its next job.
		if !writeErr && sent < len(pls) {
			before, beforeBytes := sent, inflight
			if write() != nil {
				// Its stdin is broken (no reader, or interrupted): what
				// was written before still runs, the rest goes
				// elsewhere.
				writeErr = true
				sent, inflight = before, beforeBytes
			}
		}
		if i+1 == sent {
			// Nothing in flight and nothing more can be written.
			p.mu.Lock()
			w.jobs += uint64(i + 1)
			p.discard(w)
			p.mu.Unlock()
			pr.kill()
			return i + 1
		}
		p.setCurrent(w, pls[i+1].Context)
		// The next job's deadline counts from this reply.
		b.arm(now)
	}
	p.release(w, len(pls), true)
	return len(pls)
}

// abandon kills w (whose process is pr), whose batch cause broke, and replaces it. inflight is
// the size of the frames written to w and not answered; started reports
// whether w read any of them (the first of them started), which is how a
// job a worker never started is told from one it crashed in. ran says w
// ran a job before (or answered the one that broke it): only a worker
// that neither ran nor started a job counts toward the respawn backoff
// (see failGone). The error is what the job that was running gets.
func (p *Pool) abandon(ctx context.Context, w *worker, pr *proc, cause error, inflight int, ran bool) (started bool, err error) {
	p.mu.Lock()
	gone := w.goneMidJob
	ran = ran || w.jobs > 0
	p.mu.Unlock()
	// Stop the worker before looking at what it left unread.
	pr.kill()
	started = pr.unanswered() < inflight
	return started, p.failGone(ctx, w, cause, gone, started || ran)
}

// setCurrent records the context of the job w runs now (Workers).
func (p *Pool) setCurrent(w *worker, jobCtx []byte) {
	p.mu.Lock()
	w.setJob(jobCtx)
	p.mu.Unlock()
}

// unreadBytes returns how many bytes written to the pipe whose write end
// is f have not been read yet (FIONREAD, alias TIOCINQ, works on either end of a pipe),
// or -1 if that cannot be told (f closed).
func unreadBytes(f *os.File) int {
	sc, err := f.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	_ = sc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
