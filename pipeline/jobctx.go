package pipeline

import (
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
)

// appendPayload builds the job frame for d: the job context
// (frame.AppendJobContext) written into buf[:0], grown as needed, and the
// body unchanged. Each concurrency slot reuses one buffer for all its jobs
// (the Executor does not retain the payload after Run returns). d is not
// modified.
func appendPayload(buf []byte, d *consumer.Delivery) frame.Payload {
	m := frame.JobMeta{ID: d.ID, Job: d.Job, Driver: d.Driver, Queue: d.Queue, Pipeline: d.Pipeline,
		Headers: d.Headers, Attempt: d.Attempt, Extra: d.Context}
	return frame.Payload{Context: frame.AppendJobContext(buf, &m), Body: d.Body}
}
