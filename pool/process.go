package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/frame"
)

const (
	// exitGrace is how long the reaper lets a running Exec read what a
	// worker wrote before it exited, before interrupting that read.
	exitGrace = 250 * time.Millisecond
	// stderrGrace bounds, after a worker exits, the wait for its stderr
	// pipe to close (a grandchild may hold it open).
	stderrGrace = time.Second
	// stopWriteTimeout bounds writing the stop frame to a worker.
	stopWriteTimeout = time.Second
	// maxKeptBuf: a worker keeps its frame buffer up to this size.
	maxKeptBuf = 1 << 20
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

// worker is one worker process. The fields after the comment are guarded
// by Pool.mu; the others are set at spawn or owned by whoever holds the
// worker (the Exec running on it, or the goroutine stopping it).
type worker struct {
	pid     int
	cmd     *exec.Cmd
	stdin   *os.File    // write end of the worker's stdin
	stdout  *stdoutPipe // read end of the worker's stdout
	r       *frame.Reader
	buf     []byte    // frame buffer reused by every Exec
	opt     [1]uint32 // option 0 of the job frame
	exec    execTimer // the running job's deadline (blocking stdout only)
	created time.Time
	stderr  *stderrLog
	exited  chan struct{} // closed once the process is reaped
	exit    string        // exit status; read only after exited is closed
	exitOK  bool          // it exited with status 0; read only after exited is closed
	// exitKilled: SIGKILL ended it; read only after exited is closed.
	exitKilled bool
	reading    atomic.Bool   // an Exec is waiting for a reply on stdout
	window     int           // bytes of job frames that may be written ahead of replies (see pipeWindow)
	released   chan struct{} // cap 1: an Exec let go of a worker whose process exited mid-job

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

// wroteAfterReply reports whether w's stdout holds bytes that no job
// asked for: read ahead with its last reply, or (when inPipe is set, at
// the price of a system call) still in the pipe. Call it only when w has
// no job in flight.
func (w *worker) wroteAfterReply(inPipe bool) bool {
	if w.r.Buffered() > 0 {
		return true
	}
	return inPipe && unreadBytes(w.stdout.f) > 0
}

// kill sends SIGKILL to the worker's process group. Safe to call any
// number of times, also after the process exited.
func (w *worker) kill() {
	_ = syscall.Kill(-w.pid, syscall.SIGKILL)
}

// interrupt makes a pending read or write on the worker's pipes return
// os.ErrDeadlineExceeded at once. When stdout is read in blocking mode
// this is for good: the worker must not run another job.
func (w *worker) interrupt() {
	w.stdout.trip()
	_ = w.stdin.SetWriteDeadline(time.Unix(1, 0))
}

// spawn starts one worker and runs the pid handshake, bounded by
// AllocateTimeout and ctx. On failure the process is killed and reaped
// and the error names the command and quotes the worker's stderr.
func (p *Pool) spawn(ctx context.Context) (*worker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pool: stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("pool: stdout pipe: %w", err)
	}
	sl := &stderrLog{log: p.log}
	cmd := exec.Command(p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.Env = p.env
	cmd.Stdin = inR
	cmd.Stdout = outW
	cmd.Stderr = sl
	cmd.WaitDelay = stderrGrace
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("pool: start worker %s: %w", p.cmdline, err)
	}
	stdout := newStdoutPipe(outR, p.cfg.pollStdout)
	w := &worker{
		window:   writeAheadWindow(inW),
		pid:      cmd.Process.Pid,
		cmd:      cmd,
		stdin:    inW,
		stdout:   stdout,
		r:        frame.NewReader(stdout),
		created:  time.Now(),
		stderr:   sl,
		exited:   make(chan struct{}),
		released: make(chan struct{}, 1),
	}
	w.lastUsed = w.created
	w.exec.expire = w.interrupt
	sl.pid.Store(int64(w.pid))
	p.wg.Go(func() { p.reap(w) })
	if err := p.handshake(ctx, w); err != nil {
		w.kill()
		<-w.exited
		_ = w.stdin.Close()
		_ = w.stdout.Close()
		return nil, fmt.Errorf("pool: worker %s (pid %d) did not start: %w%s", p.cmdline, w.pid, err, describeExit(w.exit, sl.tail()))
	}
	return w, nil
}

// defaultSlowHandshake is how long a worker may take to answer its
// handshake before a warning says so (with what it printed on stderr).
const defaultSlowHandshake = 5 * time.Second

// handshake sends {"pid":<ours>} and expects a control frame with the
// worker's pid, within AllocateTimeout and ctx.
func (p *Pool) handshake(ctx context.Context, w *worker) error {
	dl := time.Now().Add(p.cfg.AllocateTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = w.stdout.SetReadDeadline(dl)
	_ = w.stdin.SetWriteDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		w.interrupt()
		close(fired)
	})
	if slowHandshake := cmp.Or(p.cfg.slowHandshake, defaultSlowHandshake); slowHandshake < p.cfg.AllocateTimeout {
		// A worker stuck before its handshake (waiting on a database,
		// on a lock) is reported long before allocate_timeout.
		slow := time.AfterFunc(slowHandshake, func() {
			p.log.Warn("worker has not answered its handshake yet", "pid", w.pid, "waited", slowHandshake.String(),
				"allocate_timeout", p.cfg.AllocateTimeout.String(), "stderr", strings.Join(w.stderr.tail(), "\n"))
		})
		defer slow.Stop()
	}
	_, werr := w.stdin.Write(frame.EncodeControl(frame.FlagCodecJSON, frame.PidPayload(os.Getpid())))
	// Read even if the write failed: a worker that exited at once may
	// have said why on stdout (PHP's "Could not open input file").
	f, err := w.r.ReadFrame()
	if werr != nil && (err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded)) {
		err = fmt.Errorf("sending the pid request: %w", werr)
	}
	if !stop() {
		<-fired // the interrupt ran: the handshake was cut short
		return fmt.Errorf("%w: %w", frame.ErrHandshake, context.Cause(ctx))
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: no pid reply within allocate_timeout (%s)", frame.ErrHandshake, p.cfg.AllocateTimeout)
	case err != nil:
		return err
	case f.Flags&frame.FlagControl == 0:
		return fmt.Errorf("%w: the reply is not a control frame (flags %#02x, payload %.64q)", frame.ErrHandshake, f.Flags, f.Payload)
	}
	if _, err := frame.ParsePid(f.Payload); err != nil {
		return err
	}
	_ = w.stdout.SetReadDeadline(time.Time{})
	_ = w.stdin.SetWriteDeadline(time.Time{})
	if w.stdout.Tripped() {
		// The deadline passed just after the reply came.
		return fmt.Errorf("%w: no pid reply within allocate_timeout (%s)", frame.ErrHandshake, p.cfg.AllocateTimeout)
	}
	return nil
}

// reap waits for the process, records how it ended and takes the worker
// out of the pool. If a job is running on it, the Exec gets exitGrace to
// read what the worker wrote before its read is interrupted.
func (p *Pool) reap(w *worker) {
	err := w.cmd.Wait()
	// Whatever the worker left running in its process group goes with
	// it (the group id cannot be reused while a member lives).
	w.kill()
	w.stderr.flush()
	w.exit = exitStatus(err, w.cmd.ProcessState)
	w.exitOK = err == nil
	if ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		w.exitKilled = ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	close(w.exited)

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
	// The Exec may be busy elsewhere (settling a job of its batch) with a
	// reply still to read: interrupt only a read that has waited a whole
	// grace without an end (a grandchild holds stdout).
	t := time.NewTicker(exitGrace)
	for waiting := true; waiting; {
		select {
		case <-w.released:
			waiting = false
		case <-t.C:
			if w.reading.Load() {
				w.interrupt()
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
	_ = w.stdin.SetWriteDeadline(time.Now().Add(stopWriteTimeout))
	_, _ = w.stdin.Write(p.stopFrame)
	t := time.NewTimer(p.cfg.DestroyTimeout)
	defer t.Stop()
	select {
	case <-w.exited:
		return
	case <-t.C:
		p.log.Warn("worker ignored the stop frame, killing it", "pid", w.pid, "destroy_timeout", p.cfg.DestroyTimeout)
	case <-p.killNow:
	}
	w.kill()
	<-w.exited
}

// exitStatus renders how a process ended.
func exitStatus(err error, ps *os.ProcessState) string {
	if ps != nil {
		return ps.String()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func describeExit(exit string, tail []string) string {
	var b strings.Builder
	if exit != "" {
		b.WriteString("; ")
		b.WriteString(exit)
	}
	if len(tail) > 0 {
		b.WriteString("; stderr: ")
		b.WriteString(strings.Join(tail, " | "))
	}
	return b.String()
}

// readRSS returns the resident set size of pid in bytes, or 0.
func readRSS(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
