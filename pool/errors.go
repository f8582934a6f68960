package pool

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by Pool methods. Exec errors are one of these, a
// *WorkerError (which wraps ErrWorkerCrashed) or a *JobError.
var (
	// ErrNoWorker: no worker became free within AllocateTimeout (or the
	// caller's ctx ended first, then the error also wraps ctx.Err()). The
	// job never reached a worker.
	ErrNoWorker = errors.New("pool: no free worker")
	// ErrExecTimeout: the job ran past ExecTTL or its ctx ended; the worker
	// was killed (it is replaced). The error also wraps context.Cause(ctx)
	// when the ctx ended.
	ErrExecTimeout = errors.New("pool: job timed out, worker killed")
	// ErrWorkerCrashed is wrapped by *WorkerError: the worker exited,
	// closed its stdout or sent something that is not a valid reply while
	// running a job. It was killed and is replaced.
	ErrWorkerCrashed = errors.New("pool: worker crashed")
	// ErrClosed: the pool is stopped or stopping; also returned by an Exec
	// whose worker was killed because Stop ran out of time.
	ErrClosed = errors.New("pool: closed")
)

// WorkerError reports a worker that failed while running a job. It wraps
// ErrWorkerCrashed and the cause (for instance frame.ErrNotFrame, io.EOF).
type WorkerError struct {
	// Pid is the worker's process id.
	Pid int
	// Stderr holds the worker's last stderr lines, oldest first.
	Stderr []string
	// Exit is the process exit status as os/exec reports it ("exit status
	// 255", "signal: killed"), or "" if unknown.
	Exit string
	// Err is the cause.
	Err error
}

func (e *WorkerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pool: worker %d crashed during a job: %v", e.Pid, e.Err)
	if e.Exit != "" {
		fmt.Fprintf(&b, " (%s)", e.Exit)
	}
	if len(e.Stderr) > 0 {
		b.WriteString("; last stderr lines: ")
		b.WriteString(strings.Join(e.Stderr, " | "))
	}
	return b.String()
}

// Unwrap returns ErrWorkerCrashed and the cause.
func (e *WorkerError) Unwrap() []error { return []error{ErrWorkerCrashed, e.Err} }

// JobError is an ERROR frame from the worker: the job failed (usually an
// uncaught exception) and the worker stays in the pool.
type JobError struct {
	// Pid is the worker that reported the error.
	Pid int
	// Message is the payload of the ERROR frame.
	Message string
}

func (e *JobError) Error() string {
	return fmt.Sprintf("pool: worker %d reported a job error: %s", e.Pid, e.Message)
}
