package pipeline

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
	"github.com/pipevisor/pipevisor/retry"
)

// Errors as the pool returns them.
func jobErr(msg string) error { return &pool.JobError{Pid: 12, Message: msg} }
func execTimeoutErr() error   { return fmt.Errorf("pool: worker 12: %w", pool.ErrExecTimeout) }
func crashErr() error {
	return &pool.WorkerError{Pid: 12, Exit: "signal: killed", Err: errors.New("EOF")}
}
func noWorkerErr() error   { return fmt.Errorf("%w after 60s", pool.ErrNoWorker) }
func poolClosedErr() error { return pool.ErrClosed }

func TestOutcomeFor(t *testing.T) {
	// noRetry is the policy of a pipeline without a retry: section (the
	// defaults); withRetry of one that has retry: {max_attempts: 3}.
	noRetry := retry.Policy{
		MaxAttempts: 3,
		Backoff:     retry.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.1},
	}
	withRetry := noRetry
	withRetry.Configured = true
	reply := func(typ frame.ReplyType, d frame.ReplyData) frame.Reply { return frame.Reply{Type: typ, Data: d} }
	badReply := func() error {
		_, err := frame.ParseReply([]byte("oops"))
		return err
	}()
	shutdownCtx, cancel := context.WithCancelCause(context.Background())
	cancel(ErrShutdown)
	hdr := map[string][]string{"k": {"v"}}
	// What RoadRunner's SDK sends: every header the task has, the attempt
	// header it was given included.
	echoed := map[string][]string{"k": {"v"}, frame.AttemptHeader: {"2"}}

	tests := []struct {
		name    string
		reply   frame.Reply
		err     error
		attempt int
		retry   bool // the pipeline has a retry: section
		want    consumer.Outcome
		reason  string // substring of Reason when want.Reason is empty
	}{
		{name: "ack", reply: reply(frame.ReplyAck, frame.ReplyData{}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Ack}},
		{name: "legacy no error", reply: reply(frame.ReplyNoError, frame.ReplyData{}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Ack}},
		{name: "ack at last attempt", reply: reply(frame.ReplyAck, frame.ReplyData{}), attempt: 3, retry: true,
			want: consumer.Outcome{Action: consumer.Ack}},
		{name: "nack no requeue", reply: reply(frame.ReplyNack, frame.ReplyData{Message: "bad input"}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Dead, Reason: "bad input"}},
		{name: "nack no requeue no message", reply: reply(frame.ReplyNack, frame.ReplyData{}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Dead, Reason: "nacked by the worker"}},
		{name: "nack no requeue with retry", reply: reply(frame.ReplyNack, frame.ReplyData{Message: "bad input"}), attempt: 1, retry: true,
			want: consumer.Outcome{Action: consumer.Dead, Reason: "bad input"}},

		// NACK with redelivery, no retry: section: as RoadRunner, no cap.
		{name: "nack requeue with delay", reply: reply(frame.ReplyNack, frame.ReplyData{Message: "later", Requeue: true, DelaySeconds: 7}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Delay: 7 * time.Second, Reason: "later"}},
		{name: "nack requeue no delay is at once", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true}), attempt: 2,
			want: consumer.Outcome{Action: consumer.Retry, Reason: "nacked by the worker"}},
		{name: "nack requeue headers ignored", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true, Headers: hdr}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Reason: "nacked by the worker"}},
		{name: "nack requeue at max attempts, no cap", reply: reply(frame.ReplyNack, frame.ReplyData{Message: "still failing", Requeue: true, DelaySeconds: 1}), attempt: 3,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second, Reason: "still failing"}},
		{name: "nack requeue far past max attempts, no cap", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true}), attempt: 50,
			want: consumer.Outcome{Action: consumer.Retry, Reason: "nacked by the worker"}},
		{name: "negative delay clamps to zero", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true, DelaySeconds: -5}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Reason: "nacked by the worker"}},

		// NACK with redelivery under retry:: capped; no delay waits for backoff.
		{name: "retry: nack requeue no delay waits for backoff", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true}), attempt: 1, retry: true,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second, Reason: "nacked by the worker"}},
		{name: "retry: nack requeue no delay, backoff grows", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true}), attempt: 2, retry: true,
			want: consumer.Outcome{Action: consumer.Retry, Delay: 2 * time.Second, Reason: "nacked by the worker"}},
		{name: "retry: negative delay waits for backoff", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true, DelaySeconds: -5}), attempt: 1, retry: true,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second, Reason: "nacked by the worker"}},
		{name: "retry: nack requeue keeps its own delay", reply: reply(frame.ReplyNack, frame.ReplyData{Message: "later", Requeue: true, DelaySeconds: 7}), attempt: 2, retry: true,
			want: consumer.Outcome{Action: consumer.Retry, Delay: 7 * time.Second, Reason: "later"}},
		{name: "retry: nack requeue at max attempts", reply: reply(frame.ReplyNack, frame.ReplyData{Message: "still failing", Requeue: true, DelaySeconds: 1}), attempt: 3, retry: true,
			want: consumer.Outcome{Action: consumer.Dead}, reason: "attempt 3 of 3 failed: still failing"},
		{name: "retry: nack requeue past max attempts", reply: reply(frame.ReplyNack, frame.ReplyData{Requeue: true}), attempt: 9, retry: true,
			want: consumer.Outcome{Action: consumer.Dead}, reason: "attempt 9 of 3"},

		// REQUEUE.
		{name: "requeue with delay and headers", reply: reply(frame.ReplyRequeue, frame.ReplyData{Message: "again", DelaySeconds: 3, Headers: hdr}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Requeue, Delay: 3 * time.Second, Headers: hdr, Reason: "again"}},
		{name: "requeue no headers", reply: reply(frame.ReplyRequeue, frame.ReplyData{}), attempt: 2,
			want: consumer.Outcome{Action: consumer.Requeue, Reason: "requeued by the worker"}},
		{name: "requeue drops the echoed attempt header", reply: reply(frame.ReplyRequeue, frame.ReplyData{Headers: echoed}), attempt: 2,
			want: consumer.Outcome{Action: consumer.Requeue, Headers: hdr, Reason: "requeued by the worker"}},
		{name: "requeue of only the attempt header carries none", reply: reply(frame.ReplyRequeue, frame.ReplyData{Headers: map[string][]string{frame.AttemptHeader: {"1"}}}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Requeue, Reason: "requeued by the worker"}},
		{name: "requeue at max attempts, no cap", reply: reply(frame.ReplyRequeue, frame.ReplyData{Message: "again", Headers: hdr}), attempt: 3,
			want: consumer.Outcome{Action: consumer.Requeue, Headers: hdr, Reason: "again"}},
		{name: "requeue 11th time, no cap", reply: reply(frame.ReplyRequeue, frame.ReplyData{Message: "again", Headers: hdr}), attempt: 11,
			want: consumer.Outcome{Action: consumer.Requeue, Headers: hdr, Reason: "again"}},
		{name: "retry: requeue keeps its own delay", reply: reply(frame.ReplyRequeue, frame.ReplyData{Message: "again", Headers: hdr}), attempt: 1, retry: true,
			want: consumer.Outcome{Action: consumer.Requeue, Headers: hdr, Reason: "again"}},
		{name: "retry: requeue at max attempts", reply: reply(frame.ReplyRequeue, frame.ReplyData{Message: "again", Headers: hdr}), attempt: 3, retry: true,
			want: consumer.Outcome{Action: consumer.Dead}, reason: "attempt 3 of 3 failed: again"},

		// Legacy type 1: a REQUEUE with its headers and delay when requeue is set.
		{name: "legacy error requeue keeps headers and delay", reply: reply(frame.ReplyError, frame.ReplyData{Message: "boom", Requeue: true, DelaySeconds: 2, Headers: echoed}), attempt: 2,
			want: consumer.Outcome{Action: consumer.Requeue, Delay: 2 * time.Second, Headers: hdr, Reason: "boom"}},
		{name: "legacy error requeue no headers", reply: reply(frame.ReplyError, frame.ReplyData{Message: "boom", Requeue: true}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Requeue, Reason: "boom"}},
		{name: "legacy error requeue at max attempts, no cap", reply: reply(frame.ReplyError, frame.ReplyData{Message: "boom", Requeue: true, Headers: hdr}), attempt: 3,
			want: consumer.Outcome{Action: consumer.Requeue, Headers: hdr, Reason: "boom"}},
		{name: "legacy error no requeue is dead, not ack", reply: reply(frame.ReplyError, frame.ReplyData{Message: "boom", Headers: hdr}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Dead, Reason: "boom"}},
		{name: "retry: legacy error requeue no delay waits for backoff", reply: reply(frame.ReplyError, frame.ReplyData{Message: "boom", Requeue: true, Headers: hdr}), attempt: 2, retry: true,
			want: consumer.Outcome{Action: consumer.Requeue, Delay: 2 * time.Second, Headers: hdr, Reason: "boom"}},
		{name: "retry: legacy error requeue keeps its own delay", reply: reply(frame.ReplyError, frame.ReplyData{Message: "boom", Requeue: true, DelaySeconds: 5, Headers: hdr}), attempt: 1, retry: true,
			want: consumer.Outcome{Action: consumer.Requeue, Delay: 5 * time.Second, Headers: hdr, Reason: "boom"}},
		{name: "retry: legacy error requeue at max attempts", reply: reply(frame.ReplyError, frame.ReplyData{Message: "boom", Requeue: true}), attempt: 3, retry: true,
			want: consumer.Outcome{Action: consumer.Dead}, reason: "attempt 3 of 3 failed: boom"},

		// What the worker did not decide: capped and backed off either way.
		{name: "unknown reply type retries", reply: reply(frame.ReplyType(9), frame.ReplyData{}), attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second}, reason: "unknown reply type 9"},
		{name: "unknown reply type at max attempts", reply: reply(frame.ReplyType(9), frame.ReplyData{}), attempt: 3,
			want: consumer.Outcome{Action: consumer.Dead}, reason: "unknown reply type 9"},
		{name: "job error first attempt", err: jobErr("Exception: db down"), attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second}, reason: "db down"},
		{name: "job error second attempt backs off", err: jobErr("db down"), attempt: 2,
			want: consumer.Outcome{Action: consumer.Retry, Delay: 2 * time.Second}, reason: "db down"},
		{name: "job error at max attempts", err: jobErr("db down"), attempt: 3,
			want: consumer.Outcome{Action: consumer.Dead}, reason: "db down"},
		{name: "retry: job error at max attempts", err: jobErr("db down"), attempt: 3, retry: true,
			want: consumer.Outcome{Action: consumer.Dead}, reason: "db down"},
		{name: "exec timeout", err: execTimeoutErr(), attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second}, reason: execTimeoutErr().Error()},
		{name: "exec timeout at max attempts", err: execTimeoutErr(), attempt: 3,
			want: consumer.Outcome{Action: consumer.Dead}, reason: execTimeoutErr().Error()},
		{name: "worker crashed", err: crashErr(), attempt: 2,
			want: consumer.Outcome{Action: consumer.Retry, Delay: 2 * time.Second}, reason: crashErr().Error()},
		{name: "worker crashed at max attempts", err: crashErr(), attempt: 3,
			want: consumer.Outcome{Action: consumer.Dead}, reason: crashErr().Error()},
		{name: "retry: worker crashed at max attempts", err: crashErr(), attempt: 3, retry: true,
			want: consumer.Outcome{Action: consumer.Dead}, reason: crashErr().Error()},
		{name: "bad reply", err: badReply, attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second}, reason: frame.ErrBadReply.Error()},
		{name: "bad reply at max attempts", err: badReply, attempt: 3,
			want: consumer.Outcome{Action: consumer.Dead}, reason: frame.ErrBadReply.Error()},
		{name: "unknown error retries", err: errors.New("something odd"), attempt: 1,
			want: consumer.Outcome{Action: consumer.Retry, Delay: time.Second}, reason: "something odd"},
		{name: "no worker releases, no attempt", err: noWorkerErr(), attempt: 3,
			want: consumer.Outcome{Action: consumer.Release, Delay: NoWorkerDelay}, reason: noWorkerErr().Error()},
		{name: "pool closed releases", err: poolClosedErr(), attempt: 3,
			want: consumer.Outcome{Action: consumer.Release, Delay: NoWorkerDelay}, reason: poolClosedErr().Error()},
		{name: "shutdown releases, no attempt", err: fmt.Errorf("%w: %w", ErrShutdown, crashErr()), attempt: 3,
			want: consumer.Outcome{Action: consumer.Release}, reason: ErrShutdown.Error()},
		{name: "shutdown cause from context", err: context.Cause(shutdownCtx), attempt: 1,
			want: consumer.Outcome{Action: consumer.Release}, reason: ErrShutdown.Error()},
		{name: "exec cut by shutdown (pool wraps the cause)", err: fmt.Errorf("%w: %w", pool.ErrExecTimeout, context.Cause(shutdownCtx)), attempt: 3,
			want: consumer.Outcome{Action: consumer.Release}, reason: ErrShutdown.Error()},
		{name: "allocation cut by shutdown", err: errors.Join(noWorkerErr(), context.Canceled, ErrShutdown), attempt: 1,
			want: consumer.Outcome{Action: consumer.Release}, reason: ErrShutdown.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := noRetry
			if tt.retry {
				policy = withRetry
			}
			got := outcomeFor(tt.reply, tt.err, tt.attempt, policy, fixedRand)
			reason := got.Reason
			if tt.want.Reason == "" {
				if !strings.Contains(got.Reason, tt.reason) {
					t.Errorf("Reason = %q, want it to contain %q", got.Reason, tt.reason)
				}
				got.Reason = ""
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("outcomeFor = %+v (reason %q), want %+v", got, reason, tt.want)
			}
		})
	}
}

func TestOutcomeForCopiesRequeueHeaders(t *testing.T) {
	for _, typ := range []frame.ReplyType{frame.ReplyRequeue, frame.ReplyError} {
		h := map[string][]string{"k": {"v"}, frame.AttemptHeader: {"1"}}
		o := outcomeFor(frame.Reply{Type: typ, Data: frame.ReplyData{Requeue: true, Headers: h}}, nil, 1, retry.Defaults(), fixedRand)
		o.Headers["other"] = []string{"x"}
		if len(h) != 2 || len(h[frame.AttemptHeader]) != 1 {
			t.Fatalf("type %d: outcome headers alias the reply headers: %v", typ, h)
		}
	}
}
