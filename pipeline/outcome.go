package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
)

// NoWorkerDelay is how long a job waits before it is handed out again when
// no worker became free within the pool's allocate_timeout.
const NoWorkerDelay = time.Second

// outcomeFor is the one outcome table of DESIGN.md: it turns what the worker
// replied (reply, valid only when err is nil) or what went wrong (err) for
// delivery number attempt (1-based) into the fate of the job.
//
//   - ACK (type 2), legacy type 0: Ack.
//   - NACK requeue:false, legacy type 1 requeue:false: Dead with the message.
//   - NACK requeue:true: Retry(delay_seconds).
//   - REQUEUE (type 4): Requeue(delay_seconds, headers).
//   - legacy type 1 requeue:true: Requeue(delay_seconds, headers), as
//     RoadRunner runs it (its SDK's fail() sends the task's headers).
//   - err wrapping ErrShutdown (the job was interrupted by Stop) or
//     ErrPaused (received as Pause cut the Receive short): Release, no
//     attempt spent.
//   - pool.ErrNoWorker, pool.ErrClosed: Release after NoWorkerDelay, no
//     attempt spent (the job never reached a worker).
//   - any other err (ERROR frame *pool.JobError, pool.ErrExecTimeout,
//     pool.ErrWorkerCrashed, frame.ErrBadReply, ...): Retry(backoff),
//     one attempt spent; at max_attempts: Dead.
//
// The three redeliveries the worker decided (NACK requeue:true, REQUEUE,
// legacy type 1 requeue:true) depend on policy.Configured: without a
// retry: section they have no attempt cap and keep the worker's delay,
// as under RoadRunner; with one they are Dead at max_attempts, and the NACK
// and legacy type 1 that name no delay wait for backoff(attempt). The
// headers a worker sends are merged into the job's, less frame.AttemptHeader,
// which the driver keeps counting itself.
//
// policy must have gone through WithDefaults; rnd feeds the backoff jitter.
func outcomeFor(reply frame.Reply, err error, attempt int, policy retry.Policy, rnd func() float64) consumer.Outcome {
	if err != nil {
		switch {
		case errors.Is(err, ErrShutdown), errors.Is(err, ErrPaused):
			return consumer.Outcome{Action: consumer.Release, Reason: err.Error()}
		case errors.Is(err, pool.ErrNoWorker), errors.Is(err, pool.ErrClosed):
			return consumer.Outcome{Action: consumer.Release, Delay: NoWorkerDelay, Reason: err.Error()}
		}
		return retryOrDead(consumer.Outcome{
			Action: consumer.Retry,
			Delay:  policy.Delay(attempt, rnd),
			Reason: err.Error(),
		}, attempt, policy)
	}
	d := reply.Data
	delay := time.Duration(d.DelaySeconds) * time.Second
	if delay < 0 {
		delay = 0
	}
	switch reply.Type {
	case frame.ReplyAck, frame.ReplyNoError:
		return consumer.Outcome{Action: consumer.Ack}
	case frame.ReplyNack, frame.ReplyError:
		reason := d.Message
		if reason == "" {
			reason = "nacked by the worker"
		}
		if !d.Requeue {
			return consumer.Outcome{Action: consumer.Dead, Reason: reason}
		}
		if delay == 0 && policy.Configured {
			delay = policy.Delay(attempt, rnd)
		}
		o := consumer.Outcome{Action: consumer.Retry, Delay: delay, Reason: reason}
		if reply.Type == frame.ReplyError {
			o.Action, o.Headers = consumer.Requeue, workerHeaders(d.Headers)
		}
		return workerDecided(o, attempt, policy)
	case frame.ReplyRequeue:
		reason := d.Message
		if reason == "" {
			reason = "requeued by the worker"
		}
		return workerDecided(consumer.Outcome{
			Action:  consumer.Requeue,
			Delay:   delay,
			Headers: workerHeaders(d.Headers),
			Reason:  reason,
		}, attempt, policy)
	default:
		// frame.ParseReply never yields another type; a hand-made Reply
		// might. Never ack what we do not understand.
		return retryOrDead(consumer.Outcome{
			Action: consumer.Retry,
			Delay:  policy.Delay(attempt, rnd),
			Reason: fmt.Sprintf("%v: unknown reply type %d", frame.ErrBadReply, reply.Type),
		}, attempt, policy)
	}
}

// workerDecided returns o, a redelivery the worker asked for: as is when
// the pipeline has no retry: section (RoadRunner's behaviour), else
// through retryOrDead.
func workerDecided(o consumer.Outcome, attempt int, policy retry.Policy) consumer.Outcome {
	if !policy.Configured {
		return o
	}
	return retryOrDead(o, attempt, policy)
}

// retryOrDead returns o, or Dead when attempt was the last one allowed.
func retryOrDead(o consumer.Outcome, attempt int, policy retry.Policy) consumer.Outcome {
	if attempt < policy.MaxAttempts {
		return o
	}
	return consumer.Outcome{
		Action: consumer.Dead,
		Reason: fmt.Sprintf("attempt %d of %d failed: %s", attempt, policy.MaxAttempts, o.Reason),
	}
}

// workerHeaders returns a copy of the headers a worker sent with its
// reply, without frame.AttemptHeader (the worker echoes back the value it was
// given; the driver counts attempts itself); nil when nothing is left.
func workerHeaders(h map[string][]string) map[string][]string {
	out := cloneHeaders(h, 0)
	delete(out, frame.AttemptHeader)
	if len(out) == 0 {
		return nil
	}
	return out
}

// cloneHeaders returns a copy of h with room for extra more keys; nil when
// h is empty and extra is 0. The value slices are shared: nobody mutates
// them in place.
func cloneHeaders(h map[string][]string, extra int) map[string][]string {
	if len(h) == 0 && extra == 0 {
		return nil
	}
	out := make(map[string][]string, len(h)+extra)
	for k, v := range h {
		out[k] = v
	}
	return out
}
