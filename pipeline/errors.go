package pipeline

import (
	"errors"
	"fmt"
)

// Sentinel errors of the pipeline package.
var (
	// ErrShutdown is the cause with which the context of running jobs is
	// cancelled once the grace period of Stop has run out. The pool kills
	// the workers of those jobs; the pipeline hands the jobs back to the
	// broker without spending an attempt.
	ErrShutdown = errors.New("pipeline: shut down")
	// ErrStopped is returned by Run, Pause and Resume after Stop.
	ErrStopped = errors.New("pipeline: stopped")
	// ErrPaused is returned by Check while the pipeline is paused; it is
	// also the cancel cause of a Receive interrupted by Pause.
	ErrPaused = errors.New("pipeline: paused")
	// ErrRunning is returned by Run when the pipeline is already running.
	ErrRunning = errors.New("pipeline: already running")

	// errReceivedWhilePausing releases a job whose Receive returned after
	// Pause had cancelled it.
	errReceivedWhilePausing = fmt.Errorf("%w: received while pausing", ErrPaused)
)
