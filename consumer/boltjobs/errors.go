package boltjobs

import "errors"

// Sentinel errors of the boltdb driver. The shared ones (ErrClosed,
// ErrAlreadySettled, ErrUnknownAction, ErrInDoubt) come from package
// consumer.
var (
	// ErrLocked is wrapped by Open's error when another process (another
	// supervisor) holds the database file.
	ErrLocked = errors.New("the file is in use by another process (another supervisor?)")
	// ErrCorrupt is wrapped by Open's error when the file is not a usable
	// database: truncated, garbled, or not a bbolt file at all.
	ErrCorrupt = errors.New("the file is corrupt or not a job database")
	// ErrNotActive is returned by Settle when the job is not handed out;
	// it means a driver bug and should never be seen.
	ErrNotActive = errors.New("boltjobs: job is not handed out")
	// ErrInUse is returned by Open for a pipeline that is already open in
	// the same file.
	ErrInUse = errors.New("boltjobs: pipeline already open")
)
