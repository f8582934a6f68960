package memjobs

import "errors"

// Sentinel errors of the memory driver. The shared ones (ErrClosed,
// ErrAlreadySettled, ErrUnknownAction: the job is released back to its
// original position so that it is not lost) come from package consumer.
var (
	// ErrNotActive is returned by Settle when the job is not handed out;
	// it means a driver bug and should never be seen.
	ErrNotActive = errors.New("memjobs: job is not handed out")
)
