package consumer

import (
	"context"
	"errors"
	"time"
)

// ErrDeadNotFound is wrapped by the error of a failed-jobs operation that
// names a job id no dead store holds.
var ErrDeadNotFound = errors.New("consumer: no such failed job")

// MaxDeadReason bounds the reason a driver keeps with a dead job, in
// bytes; a longer one is cut by TruncateReason.
const MaxDeadReason = 4096

// DeadJob is one job of a pipeline's dead store: what an operator needs
// to see why it died and to run it again.
type DeadJob struct {
	// Job is the job as it was last delivered: ID, Name, Pipeline,
	// Payload, Headers (requeue headers merged, the driver's own
	// dead-letter headers left out), Priority and Key.
	Job Job
	// Reason is why it died (Outcome.Reason: the worker's NACK message,
	// the ERROR frame, or a crash or exec_ttl with the tail of the
	// worker's stderr), at most MaxDeadReason bytes.
	Reason string
	// Attempts is the attempt number of the delivery that died.
	Attempts int
	// At is when it died; zero when the broker did not record it.
	At time.Time
}

// DeadSelection names the dead jobs an operation acts on: every job of
// the store when All is set, else the jobs whose id is in IDs.
type DeadSelection struct {
	IDs []string
	All bool
}

// Has reports whether the selection takes the job with id.
func (s DeadSelection) Has(id string) bool {
	if s.All {
		return true
	}
	for _, x := range s.IDs {
		if x == id {
			return true
		}
	}
	return false
}

// DeadStore is a driver whose dead jobs can be listed, retried and
// removed (the memory dead list, the RabbitMQ dead-letter queue, the SQS
// DLQ, the Kafka dead-letter topic, the boltdb dead bucket). The jobs
// manager finds it with a type assertion on the pipeline's driver. A
// driver whose pipeline has no dead-letter target does not implement it,
// or returns ErrNoDeadStore from every method.
//
// Every method may be called concurrently with consuming and with each
// other; every one blocks at most until ctx is done.
type DeadStore interface {
	// ListDead returns the pipeline's dead jobs, oldest first (in the
	// broker's order where it has no time), at most limit of them when
	// limit > 0. Reading loses and duplicates nothing: a broker driver
	// hands back every message it looked at.
	ListDead(ctx context.Context, limit int) ([]DeadJob, error)
	// RetryDead publishes the selected dead jobs to the pipeline again as
	// attempt 1, with their ids, names, payloads, headers, priorities and
	// keys, and removes each from the store only once its publish was
	// confirmed. It returns the ids it retried; ids not in the store are
	// skipped without an error. On error the jobs it did not return are
	// still in the store (a job may then be both in the store and on the
	// pipeline when its publish was in doubt, never in neither).
	RetryDead(ctx context.Context, sel DeadSelection) ([]string, error)
	// RemoveDead deletes the selected dead jobs and returns their ids;
	// ids not in the store are skipped without an error.
	RemoveDead(ctx context.Context, sel DeadSelection) ([]string, error)
}

// ErrNoDeadStore is returned by the DeadStore methods of a pipeline that
// has no dead-letter target configured.
var ErrNoDeadStore = errors.New("consumer: the pipeline keeps no failed jobs (no dead-letter target)")

// TruncateReason returns r cut to at most MaxDeadReason bytes on UTF-8
// boundaries: its first 512 bytes, " … ", and as much of its end as fits
// (the tail of a worker's stderr is where the cause is).
func TruncateReason(r string) string {
	if len(r) <= MaxDeadReason {
		return r
	}
	const head = 512
	const mark = " … "
	tail := MaxDeadReason - head - len(mark)
	h := r[:head]
	for len(h) > 0 && !utf8Start(r[len(h)]) {
		h = h[:len(h)-1]
	}
	t := r[len(r)-tail:]
	for len(t) > 0 && !utf8Start(t[0]) {
		t = t[1:]
	}
	return h + mark + t
}

// utf8Start reports whether b begins a UTF-8 sequence.
func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
