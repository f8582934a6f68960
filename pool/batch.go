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

// ExecBatch runs the jobs in pls and calls done once per job, in order,
// with what Exec would have returned for it. Up to Config.Pipelining jobs
// go to one worker: their frames are written ahead of the replies (as
// many as fit in a small window; the rest follow as replies come), so the
// worker finds its next job waiting instead of sleeping until the pool
// writes it. done runs while the jobs after it are running; it must not
// call back into the pool.
//
// Each job's deadline (exec_ttl, ctx's deadline) counts from when the job
// before it was answered and its done returned (a slow settle is not the
// next job's time), or from the write for the first. A job the worker
// did not start runs on another worker and costs nothing: the jobs behind
// one that crashed, timed out or was answered with a stop request, and a
// job whose frame the worker never read (it died, or left its stdin to a
// process that does not read it). A worker that asks to stop must not run
// the jobs written behind that job (the clients of this project do not).
func (p *Pool) ExecBatch(ctx context.Context, pls []frame.Payload, done func(i int, out frame.Payload, err error)) {
	depth := min(max(p.cfg.Pipelining, 1), MaxPipelining)
	if depth == 1 {
		for i, pl := range pls {
			out, err := p.Exec(ctx, pl)
			done(i, out, err)
		}
		return
	}
	next, fruitless := 0, 0
	for next < len(pls) {
		w, err := p.take(ctx, pls[next].Context)
		if err != nil {
			for ; next < len(pls); next++ {
				done(next, frame.Payload{}, err)
			}
			return
		}
		n := min(len(pls)-next, depth)
		if p.cfg.MaxJobs > 0 {
			p.mu.Lock()
			left := p.cfg.MaxJobs - min(w.jobs, p.cfg.MaxJobs)
			p.mu.Unlock()
			n = min(n, int(max(left, 1)))
		}
		k := p.runBatch(ctx, w, pls[next:next+n], next, done)
		next += k
		if k > 0 {
			fruitless = 0
			continue
		}
		if fruitless++; fruitless > max(p.cfg.NumWorkers, p.cfg.Scale.Max) {
			err := fmt.Errorf("%w: %d workers in a row asked to stop, had closed stdin or ended without reading the job", ErrNoWorker, fruitless)
			for ; next < len(pls); next++ {
				done(next, frame.Payload{}, err)
			}
			return
		}
	}
}

// runBatch runs pls on w, which the caller took, and settles w (release or
// discard) before returning. It calls done(base+i, ...) for the first k
// jobs, in order, and returns k; the jobs from k on did not start on w.
func (p *Pool) runBatch(ctx context.Context, w *worker, pls []frame.Payload, base int, done func(int, frame.Payload, error)) int {
	if ctx.Err() != nil {
		p.release(w, 0, false)
		err := fmt.Errorf("%w: job not sent: %w", ErrNoWorker, context.Cause(ctx))
		for i := range pls {
			done(base+i, frame.Payload{}, err)
		}
		return len(pls)
	}
	var sizes [MaxPipelining]int
	sent, inflight := 0, 0 // frames written; their bytes not yet answered
	b := jobDeadline{p: p, w: w, ctx: ctx}
	b.arm(time.Now())
	// write sends the frames that fit in the window, at least one when
	// nothing is in flight.
	write := func() error {
		w.buf = w.buf[:0]
		for sent < len(pls) {
			sz := execFrameSize(pls[sent])
			if inflight > 0 && inflight+sz > w.window {
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
		_, err := w.stdin.Write(w.buf)
		if cap(w.buf) > maxKeptBuf {
			w.buf = nil
		}
		return err
	}
	if err := write(); err != nil {
		b.disarm()
		ferr := p.fail(ctx, w, err, false)
		if errors.Is(err, syscall.EPIPE) && !errors.Is(ferr, ErrClosed) {
			return 0 // nothing reached the worker
		}
		done(base, frame.Payload{}, ferr)
		return 1
	}
	writeErr := false
	for i := range pls {
		w.reading.Store(true)
		f, err := w.r.ReadFrame()
		w.reading.Store(false)
		// No deadline runs while this reply is handled and settled: a
		// slow settle must not count against the next job.
		b.disarm()
		if err != nil {
			// inflight still counts job i: did it start?
			started, ferr := p.abandon(ctx, w, err, inflight, i > 0)
			if !started && !errors.Is(ferr, ErrClosed) {
				return i
			}
			done(base+i, frame.Payload{}, ferr)
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
				if !w.retire.set() {
					w.retire = retireStopRequested
				}
				p.mu.Unlock()
				p.release(w, i, i > 0)
				return i
			}
		}
		if bad != nil {
			// Job i fails; the job behind it may have started too.
			nextStarted, ferr := p.abandon(ctx, w, bad, inflight, true)
			done(base+i, frame.Payload{}, ferr)
			if i+1 < sent && nextStarted && !errors.Is(ferr, ErrClosed) {
				done(base+i+1, frame.Payload{}, ferr)
				return i + 2
			}
			return i + 1
		}
		last := i+1 == len(pls)
		if !last {
			// Top up the pipe before settling this job, so the worker
			// has its next one.
			if !writeErr && sent < len(pls) {
				before, beforeBytes := sent, inflight
				if write() != nil {
					// Its stdin is broken (no reader, or interrupted):
					// what was written before still runs, the rest goes
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
				w.kill()
				done(base+i, out, jerr)
				return i + 1
			}
			p.setCurrent(w, pls[i+1].Context)
		}
		done(base+i, out, jerr)
		if !last {
			// The next job's deadline counts from now.
			b.arm(time.Now())
		}
	}
	p.release(w, len(pls), true)
	return len(pls)
}

// abandon kills w, whose batch cause broke, and replaces it. inflight is
// the size of the frames written to w and not answered; started reports
// whether w read any of them (the first of them started), which is how a
// job a worker never started is told from one it crashed in. ran says w
// ran a job before (or answered the one that broke it): only a worker
// that neither ran nor started a job counts toward the respawn backoff
// (see failGone). The error is what the job that was running gets.
func (p *Pool) abandon(ctx context.Context, w *worker, cause error, inflight int, ran bool) (started bool, err error) {
	p.mu.Lock()
	gone := w.goneMidJob
	ran = ran || w.jobs > 0
	p.mu.Unlock()
	// Stop the worker before looking at what it left unread.
	w.kill()
	started = unreadBytes(w.stdin) < inflight
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
