package tracing

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipevisor/pipevisor/consumer"
)

// Span attribute keys (OpenTelemetry messaging conventions where one
// fits).
const (
	attrSystem    = attribute.Key("messaging.system")
	attrOperation = attribute.Key("messaging.operation.type")
	attrPipeline  = attribute.Key("messaging.destination.name")
	attrID        = attribute.Key("messaging.message.id")
	attrJob       = attribute.Key("pipevisor.job")
	attrAttempt   = attribute.Key("pipevisor.attempt")
	attrOutcome   = attribute.Key("pipevisor.outcome")
	attrDelay     = attribute.Key("pipevisor.delay_ms")
	attrReason    = attribute.Key("pipevisor.reason")
)

const systemName = "pipevisor"

// Push is the push spans of one batch of jobs, from StartPush.
type Push struct {
	spans []trace.Span
}

// StartPush starts one producer span per job ("push <pipeline>") and
// returns a copy of jobs whose headers carry each span's traceparent (and
// tracestate), so that the worker's run continues the trace. A job whose
// headers hold a traceparent continues the producer's trace; one without
// starts a trace (or continues the span of ctx). jobs itself and its
// header maps are not modified. End the spans with Push.End.
func (t *Tracer) StartPush(ctx context.Context, jobs []consumer.Job) ([]consumer.Job, Push) {
	if t == nil {
		return jobs, Push{}
	}
	out := make([]consumer.Job, len(jobs))
	p := Push{spans: make([]trace.Span, len(jobs))}
	for i, j := range jobs {
		h := cloneHeaders(j.Headers)
		parent := t.prop.Extract(ctx, headerCarrier(h))
		sctx, span := t.tr.Start(parent, "push "+j.Pipeline,
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attrSystem.String(systemName),
				attrOperation.String("send"),
				attrPipeline.String(j.Pipeline),
				attrID.String(j.ID),
				attrJob.String(j.Name),
			))
		t.prop.Inject(sctx, headerCarrier(h))
		j.Headers = h
		out[i] = j
		p.spans[i] = span
	}
	return out, p
}

// End ends the push spans with the result of the push: err, or for a
// *consumer.BatchError the cause of each job it names (the others were
// published).
func (p Push) End(err error) {
	var be *consumer.BatchError
	batch := errors.As(err, &be)
	for i, s := range p.spans {
		cause := err
		if batch {
			cause = be.Failed[i]
		}
		if cause != nil {
			s.RecordError(cause)
			s.SetStatus(codes.Error, cause.Error())
		}
		s.End()
	}
}

// Job is the tracing of one delivery from its run to its settlement: its
// spans are children of the traceparent in the delivery's headers (the
// push span, or the producer's span). The zero Job, from a nil Tracer,
// does nothing.
type Job struct {
	t      *Tracer
	parent context.Context // carries the traceparent of the headers
	run    trace.Span      // nil until StartRun
	d      *consumer.Delivery
}

// Received starts the tracing of d, received by pipeline.
func (t *Tracer) Received(d *consumer.Delivery) Job {
	if t == nil {
		return Job{}
	}
	parent := context.Background()
	if len(d.Headers) > 0 {
		parent = t.prop.Extract(parent, headerCarrier(d.Headers))
	}
	return Job{t: t, parent: parent, d: d}
}

// attrs returns the attributes of the job's spans, with room for more.
func (j *Job) attrs(operation string, more int) []attribute.KeyValue {
	return append(make([]attribute.KeyValue, 0, 6+more),
		attrSystem.String(systemName),
		attrOperation.String(operation),
		attrPipeline.String(j.d.Pipeline),
		attrID.String(j.d.ID),
		attrJob.String(j.d.Job),
		attrAttempt.Int(j.d.Attempt))
}

// StartRun starts the run span ("run <pipeline>", a consumer span) at
// start, when the job is handed to a worker.
func (j *Job) StartRun(start time.Time) {
	if j.t == nil {
		return
	}
	_, j.run = j.t.tr.Start(j.parent, "run "+j.d.Pipeline,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(start),
		trace.WithAttributes(j.attrs("process", 0)...))
}

// EndRun ends the run span at end; err is the failure of the run (an
// error from the worker or a failure reply), nil when it succeeded.
func (j *Job) EndRun(err error, end time.Time) {
	if j.run == nil {
		return
	}
	if err != nil {
		j.run.RecordError(err)
		j.run.SetStatus(codes.Error, err.Error())
	}
	j.run.End(trace.WithTimestamp(end))
}

// Settled records the settle span ("settle <pipeline>", from start to
// end) of outcome o; serr is the broker's failure to carry it out. It is
// a child of the run span, or of the headers' traceparent when the job
// did not run (released).
func (j *Job) Settled(o consumer.Outcome, serr error, start, end time.Time) {
	if j.t == nil {
		return
	}
	parent := j.parent
	if j.run != nil {
		parent = trace.ContextWithSpan(parent, j.run)
	}
	attrs := append(j.attrs("settle", 3), attrOutcome.String(o.Action.String()))
	if o.Delay > 0 {
		attrs = append(attrs, attrDelay.Int64(o.Delay.Milliseconds()))
	}
	if o.Reason != "" {
		attrs = append(attrs, attrReason.String(o.Reason))
	}
	_, s := j.t.tr.Start(parent, "settle "+j.d.Pipeline,
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(start),
		trace.WithAttributes(attrs...))
	if serr != nil {
		s.RecordError(serr)
		s.SetStatus(codes.Error, serr.Error())
	}
	s.End(trace.WithTimestamp(end))
}

// Enabled reports whether j records spans (its Tracer is not nil).
func (j *Job) Enabled() bool { return j.t != nil }
