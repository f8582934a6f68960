package memjobs

import "errors"

// Sentinel errors of the memory driver. The shared ones (ErrClosed,
// ErrAlreadySettled) come from package consumer.
var (
	// ErrUnknownAction is returned by Settle for an Outcome whose Action is
	// not one of the consumer actions; the job is released back to its
	// original position so that it is not lost.
	ErrUnknownAction = errors.New("memjobs: unknown settle action")
	// ErrNotActive is returned by Settle when the job is not handed out;
	// it means a driver bug and should never be seen.
	ErrNotActive = errors.New("memjobs: job is not handed out")
)
