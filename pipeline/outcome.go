package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
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
//   - NACK requeue:true, legacy type 1 requeue:true: Retry(delay_seconds),
//     one attempt spent; at max_attempts: Dead.
//   - REQUEUE (type 4): Requeue(delay_seconds, headers), one attempt spent;
//     at max_attempts: Dead.
//   - err wrapping ErrShutdown (the job was interrupted by Stop) or
//     ErrPaused (received as Pause cut the Receive short): Release, no
//     attempt spent.
//   - pool.ErrNoWorker, pool.ErrClosed: Release after NoWorkerDelay, no
//     attempt spent (the job never reached a worker).
//   - any other err (ERROR frame *pool.JobError, pool.ErrExecTimeout,
//     pool.ErrWorkerCrashed, frame.ErrBadReply, ...): Retry(backoff),
//     one attempt spent; at max_attempts: Dead.
//
// policy must have gone through WithDefaults; rnd feeds the backoff jitter.
func outcomeFor(reply frame.Reply, err error, attempt int, policy RetryPolicy, rnd func() float64) consumer.Outcome {
	if err != nil {
		switch {
		case errors.Is(err, ErrShutdown), errors.Is(err, ErrPaused):
			return consumer.Outcome{Action: consumer.Release, Reason: err.Error()}
		case errors.Is(err, pool.ErrNoWorker), errors.Is(err, pool.ErrClosed):
			return consumer.Outcome{Action: consumer.Release, Delay: NoWorkerDelay, Reason: err.Error()}
		}
		return retryOrDead(consumer.Outcome{
			Action: consumer.Retry,
			Delay:  policy.backoff(attempt, rnd),
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
		return retryOrDead(consumer.Outcome{Action: consumer.Retry, Delay: delay, Reason: reason}, attempt, policy)
	case frame.ReplyRequeue:
		reason := d.Message
		if reason == "" {
			reason = "requeued by the worker"
		}
		return retryOrDead(consumer.Outcome{
			Action:  consumer.Requeue,
			Delay:   delay,
			Headers: cloneHeaders(d.Headers, 0),
			Reason:  reason,
		}, attempt, policy)
	default:
		// frame.ParseReply never yields another type; a hand-made Reply
		// might. Never ack what we do not understand.
		return retryOrDead(consumer.Outcome{
			Action: consumer.Retry,
			Delay:  policy.backoff(attempt, rnd),
			Reason: fmt.Sprintf("%v: unknown reply type %d", frame.ErrBadReply, reply.Type),
		}, attempt, policy)
	}
}

// retryOrDead returns o, or Dead when attempt was the last one allowed.
func retryOrDead(o consumer.Outcome, attempt int, policy RetryPolicy) consumer.Outcome {
	if attempt < policy.MaxAttempts {
		return o
	}
	return consumer.Outcome{
		Action: consumer.Dead,
		Reason: fmt.Sprintf("attempt %d of %d failed: %s", attempt, policy.MaxAttempts, o.Reason),
	}
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
