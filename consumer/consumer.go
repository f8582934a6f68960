// Package consumer holds the contract between the pipeline and the broker
// drivers: what a received message looks like (Delivery), how its fate is
// expressed (Outcome), and the two small interfaces every driver implements
// (Consumer and Publisher).
//
// Flow: the pipeline asks Receive for a delivery only when it has a free
// concurrency slot, but a broker driver may hold up to its configured
// prefetch of deliveries ahead of the slots (as RoadRunner does), so that a
// freed slot does not wait a broker round trip. A delivery is running only
// once Receive (or ReceiveReady) handed it out; the driver hands back those
// it holds unstarted on Pause and Close without spending an attempt.
//
// Drivers live in sub-packages (memjobs, amqpjobs, kafkajobs, sqsjobs) and
// import this package, never the reverse. The conformance suite in
// consumertest pins the behaviour every driver must show.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ContextMembers adds members of a driver's own to the job context JSON a
// worker gets with each job.
type ContextMembers interface {
	// AppendContext appends the members, each as `,"name":value` with
	// the value encoded as JSON, to b and returns the extended slice.
	AppendContext(b []byte) []byte
}

// Sentinel errors shared by every driver.
var (
	// ErrClosed is returned by Receive, Publish and Settle once the
	// consumer has been closed.
	ErrClosed = errors.New("consumer: closed")
	// ErrAlreadySettled is returned by Delivery.Settle on every call after
	// the first one.
	ErrAlreadySettled = errors.New("consumer: delivery already settled")
	// ErrStaleDelivery is returned by Settle when the delivery came from a
	// broker connection or channel that has since died; the broker
	// redelivers such a message by itself, so nothing is lost.
	ErrStaleDelivery = errors.New("consumer: delivery belongs to a dead connection")
	// ErrUnknownAction is wrapped by Settle errors for an Outcome whose
	// Action is none of the actions above; drivers hand such a message back
	// to the broker rather than lose it.
	ErrUnknownAction = errors.New("consumer: unknown outcome action")
	// ErrUnknownPipeline is returned when a job names a pipeline that does
	// not exist.
	ErrUnknownPipeline = errors.New("consumer: unknown pipeline")
	// ErrInDoubt is wrapped by the error of a published job that was sent
	// to the broker but whose confirm never came (the connection or
	// channel closed, or the confirm timed out): the job may be on the
	// broker, and publishing it again may duplicate it.
	ErrInDoubt = errors.New("consumer: in doubt: sent, but the confirm was lost (it may be in the queue)")
)

// Action is what should happen to a delivery once a worker is done with it.
type Action uint8

const (
	// Ack removes the message from the broker: the job is done.
	Ack Action = iota + 1
	// Retry puts the message back on the broker after Outcome.Delay. With a
	// zero delay and no header change the driver keeps the original
	// position where the broker allows it.
	Retry
	// Requeue puts the message back after Outcome.Delay with
	// Outcome.Headers merged into its headers.
	Requeue
	// Dead moves the message to the dead-letter target of the pipeline (or
	// discards it when there is none).
	Dead
	// Release hands the message back to the broker without spending an
	// attempt: the job never really ran (shutdown, no free worker).
	Release
)

// String returns the lower-case name used in logs and metrics.
func (a Action) String() string {
	switch a {
	case Ack:
		return "ack"
	case Retry:
		return "retry"
	case Requeue:
		return "requeue"
	case Dead:
		return "dead"
	case Release:
		return "release"
	default:
		return fmt.Sprintf("action(%d)", uint8(a))
	}
}

// Outcome is the fate of one delivery, decided once by the pipeline.
type Outcome struct {
	Action Action
	// Delay before the message is visible again (Retry, Requeue, Release).
	Delay time.Duration
	// Headers to merge into the message headers (Requeue; Retry may carry
	// the attempt header). Keys replace existing keys.
	Headers map[string][]string
	// Reason is a human-readable cause, kept with dead-lettered messages.
	Reason string
}

// SettleFunc is supplied by a driver to carry out an Outcome on its broker.
type SettleFunc func(ctx context.Context, o Outcome) error

// Delivery is one message received from a broker, wrapped for the pipeline.
//
// The exported fields are set by the driver before the delivery is handed
// out and are read-only afterwards. Settle may be called from any goroutine;
// only the first call reaches the broker.
type Delivery struct {
	ID       string              // job id (rr_id), or a generated/broker id
	Job      string              // job name (rr_job), usually a PHP class
	Pipeline string              // pipeline name
	Driver   string              // "memory", "amqp", "kafka", "sqs"
	Queue    string              // queue or topic name as configured
	Headers  map[string][]string // user headers
	Body     []byte              // payload, unchanged from the producer
	Attempt  int                 // 1 on the first delivery
	Key      string              // ordering key (Kafka key, SQS group, memory lane)
	Priority int64
	// Enqueued is when the job was pushed (or became due after its
	// delay), when the driver knows it; zero otherwise. The pipeline
	// reports the wait from it to the start of the run.
	Enqueued time.Time

	// Context, when not nil, adds the driver's own members to the job
	// context the worker gets (Kafka: topic, partition, offset).
	Context ContextMembers

	mu      sync.Mutex
	settled bool
	settle  SettleFunc
	// whenFinal, when set, registers a function to run once the outcome
	// Settle recorded is final (see SetWhenFinal).
	whenFinal func(fn func(error))
}

// NewDelivery returns a delivery whose Settle calls fn at most once.
func NewDelivery(fn SettleFunc) *Delivery {
	return &Delivery{settle: fn}
}

// SetSettle replaces the settle function; drivers that build a Delivery
// literal use it before handing the delivery out.
func (d *Delivery) SetSettle(fn SettleFunc) { d.settle = fn }

// Settle carries out o on the broker. It runs the driver's settle function
// at most once: later calls return ErrAlreadySettled without touching the
// broker. When the driver fails, the delivery still counts as settled (the
// broker redelivers an unsettled message by itself) and the error is
// returned.
func (d *Delivery) Settle(ctx context.Context, o Outcome) error {
	d.mu.Lock()
	if d.settled {
		d.mu.Unlock()
		return ErrAlreadySettled
	}
	d.settled = true
	fn := d.settle
	d.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(ctx, o)
}

// SetWhenFinal is for drivers whose Settle records an outcome that becomes
// final later (boltdb: on disk with the next group commit): register must
// arrange for fn to run once the outcome is final, with nil, or with the
// error that kept it from being so (the outcome was not carried out), on
// any goroutine, at once if it already is. A driver that sets it sets it
// before handing the delivery out; one whose Settle is final when it
// returns does not set it.
func (d *Delivery) SetWhenFinal(register func(fn func(error))) { d.whenFinal = register }

// Final reports whether an outcome Settle recorded without an error is
// final when Settle returns; when it is not, WhenFinal tells when it is.
func (d *Delivery) Final() bool { return d.whenFinal == nil }

// WhenFinal runs fn once the outcome Settle recorded is final (see
// SetWhenFinal): at once, on the calling goroutine, for a delivery whose
// Settle is final when it returns. Call it only after Settle returned nil;
// fn must be cheap and must not block.
func (d *Delivery) WhenFinal(fn func(error)) {
	if d.whenFinal == nil {
		fn(nil)
		return
	}
	d.whenFinal(fn)
}

// Settled reports whether Settle has been called.
func (d *Delivery) Settled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settled
}

// Job is a job to publish (the producer side: jobs.Push, the CLI, retries
// that republish a copy).
type Job struct {
	ID       string
	Name     string // job name
	Pipeline string
	Payload  []byte
	Headers  map[string][]string
	Delay    time.Duration
	Priority int64
	Key      string // ordering key: Kafka record key, SQS group id, memory lane
	AutoAck  bool
}

// Consumer receives deliveries from one pipeline's broker.
type Consumer interface {
	// Receive blocks until a message is available or ctx is done. It
	// returns ErrClosed after Close. The caller must hold a free
	// concurrency slot: drivers never fetch more than they are asked for
	// plus their configured prefetch.
	Receive(ctx context.Context) (*Delivery, error)
	// Close stops consuming. Messages that were received but never handed
	// out are returned to the broker. Deliveries already handed out can
	// still be settled until ctx is done. Close is idempotent.
	Close(ctx context.Context) error
}

// Publisher puts jobs on a broker.
type Publisher interface {
	// Publish sends every job and returns nil only after the broker
	// confirmed all of them. Otherwise it returns a *BatchError that names
	// every job of the batch that was not confirmed (each job it does not
	// name was confirmed), or another error when no job was confirmed.
	// A job whose error wraps ErrInDoubt was sent but its confirm was lost
	// (connection or channel closed, confirm timeout): it may be on the
	// broker. Any other error means the job is certainly not on the broker
	// (the broker refused it, or it was never sent). See ReportOf.
	Publish(ctx context.Context, jobs []Job) error
}

// Stat is the state of one pipeline, as reported by jobs.Stat.
type Stat struct {
	Pipeline string
	Driver   string
	Queue    string
	Priority int64
	Ready    int64 // waiting on the broker (or local queue), -1 when unknown
	Active   int64 // received and not yet settled
	Delayed  int64 // waiting for a delay to pass, -1 when unknown
	Reserved int64
	// Counters since start, kept by the pipeline.
	Acked    uint64
	Retried  uint64
	Requeued uint64
	Dead     uint64
	// Consuming is false while the pipeline is paused or its broker is
	// unreachable; Error then says why.
	Consuming bool
	Error     string
	// OldestAge is the age of the oldest job waiting to be received (see
	// OldestReadyReporter): 0 when none waits, -1 when the driver cannot
	// tell.
	OldestAge time.Duration
}

// BatchError reports the jobs of a batch that were not confirmed, by index
// into the batch; every job it does not name was confirmed. A job's error
// wraps ErrInDoubt when the job may be on the broker.
type BatchError struct {
	Failed map[int]error // index into the batch -> cause
}

func (e *BatchError) Error() string {
	first, inDoubt := -1, 0
	for i, err := range e.Failed {
		if first < 0 || i < first {
			first = i
		}
		if errors.Is(err, ErrInDoubt) {
			inDoubt++
		}
	}
	if first < 0 {
		return "consumer: batch failed"
	}
	return fmt.Sprintf("consumer: %d jobs of the batch not confirmed, %d failed and %d in doubt (job %d: %v)",
		len(e.Failed), len(e.Failed)-inDoubt, inDoubt, first, e.Failed[first])
}

// Unwrap returns the causes so errors.Is finds sentinels inside.
func (e *BatchError) Unwrap() []error {
	out := make([]error, 0, len(e.Failed))
	for _, err := range e.Failed {
		out = append(out, err)
	}
	return out
}

// Optional interfaces a driver may implement; the pipeline detects them with
// a type assertion.

// Pauser stops and restarts delivery at the broker (for example cancels the
// AMQP consumer so prefetched messages go back). Without it the pipeline
// pauses by not calling Receive.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Stater reports broker-side numbers (Ready, Delayed, Queue) for jobs.Stat.
// The pipeline fills in Active and the counters itself.
type Stater interface {
	Stat(ctx context.Context) (Stat, error)
}

// ReadyReceiver hands out, without waiting, deliveries that are ready now.
// With jobs.pool.pipelining above 1, the pipeline calls it after a
// Receive returned one delivery, to fill a batch of jobs written to one
// worker ahead of their replies.
type ReadyReceiver interface {
	// ReceiveReady appends to dst at most max deliveries that can be
	// handed out at once and returns dst. It never waits. Each delivery is
	// exactly what Receive would have returned (counted as in flight, with
	// its once-only Settle), in the order Receive would have returned
	// them. It may leave ready deliveries to Receive calls that are
	// waiting (other slots), so that a few jobs are spread over workers.
	// dst comes back unchanged when nothing is ready or the consumer is
	// paused or closed.
	ReceiveReady(dst []*Delivery, max int) []*Delivery
}

// Checker reports whether the driver is connected and consuming; /ready and
// jobs.Stat use it. A nil error means healthy.
type Checker interface {
	Check() error
}

// OldestReadyReporter is implemented by drivers that know when the oldest
// job waiting to be received was enqueued; the metrics read it at scrape
// time (the oldest ready job's age per pipeline). ok is false when no job
// waits or the time is unknown.
type OldestReadyReporter interface {
	OldestReady() (enqueued time.Time, ok bool)
}

// FieldError is a configuration problem at Key, a dotted YAML path relative
// to the section being validated (for example "prefetch" or
// "consumer_options.topics"). Driver Config.Validate methods return these
// (joined with errors.Join); the config package prefixes the full path.
type FieldError struct {
	Key    string
	Reason string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Reason }
