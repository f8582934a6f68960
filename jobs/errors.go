package jobs

import "errors"

// Sentinel errors of the jobs package. Errors about a pipeline name that
// does not exist wrap consumer.ErrUnknownPipeline.
var (
	// ErrPipelineExists is returned by Declare for a name already in use.
	ErrPipelineExists = errors.New("jobs: pipeline already exists")
	// ErrStopped is returned by every method after Stop.
	ErrStopped = errors.New("jobs: manager stopped")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("jobs: manager already started")
	// ErrNothingConsumed is returned by Ready while jobs.consume names
	// pipelines but none of them exists (all destroyed, or not declared
	// yet).
	ErrNothingConsumed = errors.New("jobs: no consumed pipeline is consuming")
	// ErrNotStarted is returned by Ready before Start.
	ErrNotStarted = errors.New("jobs: manager not started")
	// ErrNotPublished marks the jobs of a batch that were not published
	// because an earlier pipeline of the same batch failed (inside a
	// *consumer.BatchError).
	ErrNotPublished = errors.New("jobs: not published after an earlier failure")
)
