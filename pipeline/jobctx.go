package pipeline

import (
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
)

// payload builds the job frame for d: the job context (frame.AppendJobContext)
// and the body unchanged. d is not modified.
func payload(d *consumer.Delivery) frame.Payload {
	return appendPayload(nil, d)
}

// appendPayload is payload writing the context JSON into buf[:0], grown
// as needed: each concurrency slot reuses one buffer for all its jobs
// (the Executor does not retain the payload after Exec returns).
func appendPayload(buf []byte, d *consumer.Delivery) frame.Payload {
	m := frame.JobMeta{ID: d.ID, Job: d.Job, Driver: d.Driver, Queue: d.Queue, Pipeline: d.Pipeline,
		Headers: d.Headers, Attempt: d.Attempt, Extra: d.Context}
	return frame.Payload{Context: frame.AppendJobContext(buf, &m), Body: d.Body}
}
