package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// process is what the scheduler (take, release, retire, replace, scale,
// reap, stop) needs of a worker process. *proc is the real one; tests
// drive the scheduler with fakes that start nothing. Every method is safe
// for concurrent use unless it says otherwise.
//
// The job path (Run) writes and reads the process's pipes and needs the
// real *proc: a fake process never runs a job.
type process interface {
	// id is the process id (stable; also after the process exited).
	id() int
	// handshake runs the pid handshake within timeout and ctx, warning on
	// log when the worker has not answered after slowAfter. Called once,
	// right after the process started, by its only user.
	handshake(ctx context.Context, timeout, slowAfter time.Duration, log *slog.Logger) error
	// wait blocks until the process is reaped (and its process group
	// killed), then closes exited. Called once, by the reaper.
	wait()
	// exited is closed once the process is reaped.
	exited() <-chan struct{}
	// exitInfo says how the process ended; valid once exited is closed.
	exitInfo() exitInfo
	// strayOutput reports whether stdout holds bytes that no job asked
	// for: read ahead with the last reply, or, when inPipe is set (at the
	// price of a system call), still in the pipe. Only while no job is in
	// flight.
	strayOutput(inPipe bool) bool
	// tripped reports whether a read of stdout was interrupted for good
	// (see stdoutPipe): the process must not run another job.
	tripped() bool
	// readingReply reports whether a job is blocked reading the reply.
	readingReply() bool
	// interrupt makes a pending read or write on the pipes return at
	// once with os.ErrDeadlineExceeded.
	interrupt()
	// kill sends SIGKILL to the process group; any number of times, also
	// after the process exited.
	kill()
	// stop writes stopFrame, waits up to grace (or until now is closed)
	// for the process to exit, then kills its group; it returns once the
	// process is reaped, saying whether grace ran out.
	stop(stopFrame []byte, grace time.Duration, now <-chan struct{}) (ignored bool)
	// close releases the pipes and the job timer. No job may be running.
	close()
	// stderrTail returns the last stderr lines, oldest first.
	stderrTail() []string
}

// exitInfo is how a process ended.
type exitInfo struct {
	status string // as os/exec renders it ("exit status 1", "signal: killed")
	ok     bool   // it exited with status 0
	killed bool   // SIGKILL ended it
}

// proc is one worker process: the OS side of a worker. The fields are
// set by startProc; stdin, r and exec belong to whoever holds the worker
// (the job running on it, or the goroutine stopping it); info is written
// by wait before done is closed.
type proc struct {
	pid    int
	cmd    *exec.Cmd
	stdin  *os.File    // write end of the worker's stdin
	stdout *stdoutPipe // read end of the worker's stdout
	r      *frame.Reader
	stderr *stderrLog
	exec   execTimer // the running job's deadline (blocking stdout only)
	// window is how many bytes of job frames may be written ahead of
	// replies (see pipeWindow).
	window  int
	reading atomic.Bool // a job is waiting for a reply on stdout
	done    chan struct{}
	info    exitInfo
}

var _ process = (*proc)(nil)

// startProc starts command (argv, env) as its own process group, with
// its stdin and stdout as pipes to us and its stderr logged to log line
// by line with its pid. poll reads stdout through Go's poller instead of
// blocking reads (see stdoutPipe). The handshake is not run.
func startProc(argv, env []string, poll bool, log *slog.Logger) (*proc, error) {
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
	sl := &stderrLog{log: log}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
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
		return nil, err
	}
	stdout := newStdoutPipe(outR, poll)
	pr := &proc{
		window: writeAheadWindow(inW),
		pid:    cmd.Process.Pid,
		cmd:    cmd,
		stdin:  inW,
		stdout: stdout,
		r:      frame.NewReader(stdout),
		stderr: sl,
		done:   make(chan struct{}),
	}
	pr.exec.expire = pr.interrupt
	sl.pid.Store(int64(pr.pid))
	return pr, nil
}

func (pr *proc) id() int                 { return pr.pid }
func (pr *proc) exited() <-chan struct{} { return pr.done }
func (pr *proc) exitInfo() exitInfo      { return pr.info }
func (pr *proc) tripped() bool           { return pr.stdout.Tripped() }
func (pr *proc) readingReply() bool      { return pr.reading.Load() }
func (pr *proc) stderrTail() []string    { return pr.stderr.tail() }

// strayOutput implements process.
func (pr *proc) strayOutput(inPipe bool) bool {
	if pr.r.Buffered() > 0 {
		return true
	}
	return inPipe && unreadBytes(pr.stdout.f) > 0
}

// kill implements process.
func (pr *proc) kill() {
	_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
}

// interrupt implements process. When stdout is read in blocking mode
// this is for good: the worker must not run another job.
func (pr *proc) interrupt() {
	pr.stdout.trip()
	_ = pr.stdin.SetWriteDeadline(time.Unix(1, 0))
}

// write writes b (whole job frames) to the worker's stdin. Only by the
// holder of the worker.
func (pr *proc) write(b []byte) error {
	_, err := pr.stdin.Write(b)
	return err
}

// readFrame reads the next frame from the worker's stdout, marked as
// waiting for a reply meanwhile (see readingReply). Only by the holder of
// the worker.
func (pr *proc) readFrame() (frame.Frame, error) {
	pr.reading.Store(true)
	f, err := pr.r.ReadFrame()
	pr.reading.Store(false)
	return f, err
}

// unanswered returns how many bytes written to stdin the worker has not
// read yet, or -1 if that cannot be told.
func (pr *proc) unanswered() int { return unreadBytes(pr.stdin) }

// defaultSlowHandshake is how long a worker may take to answer its
// handshake before a warning says so (with what it printed on stderr).
const defaultSlowHandshake = 5 * time.Second

// handshake sends {"pid":<ours>} and expects a control frame with the
// worker's pid, within timeout and ctx.
func (pr *proc) handshake(ctx context.Context, timeout, slowAfter time.Duration, log *slog.Logger) error {
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = pr.stdout.SetReadDeadline(dl)
	_ = pr.stdin.SetWriteDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		pr.interrupt()
		close(fired)
	})
	if slowAfter < timeout {
		// A worker stuck before its handshake (waiting on a database,
		// on a lock) is reported long before allocate_timeout.
		slow := time.AfterFunc(slowAfter, func() {
			log.Warn("worker has not answered its handshake yet", "pid", pr.pid, "waited", slowAfter.String(),
				"allocate_timeout", timeout.String(), "stderr", strings.Join(pr.stderr.tail(), "\n"))
		})
		defer slow.Stop()
	}
	_, werr := pr.stdin.Write(frame.EncodeControl(frame.FlagCodecJSON, frame.PidPayload(os.Getpid())))
	// Read even if the write failed: a worker that exited at once may
	// have said why on stdout (PHP's "Could not open input file").
	f, err := pr.r.ReadFrame()
	if werr != nil && (err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded)) {
		err = fmt.Errorf("sending the pid request: %w", werr)
	}
	if !stop() {
		<-fired // the interrupt ran: the handshake was cut short
		return fmt.Errorf("%w: %w", frame.ErrHandshake, context.Cause(ctx))
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: no pid reply within allocate_timeout (%s)", frame.ErrHandshake, timeout)
	case err != nil:
		return err
	case f.Flags&frame.FlagControl == 0:
		return fmt.Errorf("%w: the reply is not a control frame (flags %#02x, payload %.64q)", frame.ErrHandshake, f.Flags, f.Payload)
	}
	if _, err := frame.ParsePid(f.Payload); err != nil {
		return err
	}
	_ = pr.stdout.SetReadDeadline(time.Time{})
	_ = pr.stdin.SetWriteDeadline(time.Time{})
	if pr.stdout.Tripped() {
		// The deadline passed just after the reply came.
		return fmt.Errorf("%w: no pid reply within allocate_timeout (%s)", frame.ErrHandshake, timeout)
	}
	return nil
}

// wait implements process: whatever the worker left running in its
// process group goes with it (the group id cannot be reused while a
// member lives), and its stderr is flushed before exited is closed.
func (pr *proc) wait() {
	err := pr.cmd.Wait()
	pr.kill()
	pr.stderr.flush()
	pr.info = exitInfo{status: exitStatus(err, pr.cmd.ProcessState), ok: err == nil}
	if ws, ok := pr.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		pr.info.killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	close(pr.done)
}

// stop implements process.
func (pr *proc) stop(stopFrame []byte, grace time.Duration, now <-chan struct{}) (ignored bool) {
	_ = pr.stdin.SetWriteDeadline(time.Now().Add(stopWriteTimeout))
	_, _ = pr.stdin.Write(stopFrame)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-pr.done:
		return false
	case <-t.C:
		ignored = true
	case <-now:
	}
	pr.kill()
	<-pr.done
	return ignored
}

// close implements process. Closing twice is harmless.
func (pr *proc) close() {
	pr.exec.stop()
	_ = pr.stdin.Close()
	_ = pr.stdout.Close()
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
