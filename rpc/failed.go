package rpc

import (
	"context"
	"errors"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc/jobsv1"
)

// ErrNoFailedJobs is returned by the jobs.Failed* methods of a server
// whose Jobs does not implement FailedJobs.
var ErrNoFailedJobs = errors.New("rpc: this server keeps no failed jobs")

// FailedJobs is what the jobs.Failed* methods drive; the jobs manager
// implements it. A pipeline of "" means every pipeline.
type FailedJobs interface {
	// FailedList returns the dead jobs, at most limit when limit > 0.
	FailedList(ctx context.Context, pipeline string, limit int) ([]consumer.DeadJob, error)
	// FailedShow returns the dead job with id (consumer.ErrDeadNotFound).
	FailedShow(ctx context.Context, pipeline, id string) (consumer.DeadJob, error)
	// FailedRetry publishes the selected dead jobs again and returns
	// their ids.
	FailedRetry(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error)
	// FailedRemove deletes the selected dead jobs and returns their ids.
	FailedRemove(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error)
}

// WithFailedJobs serves the jobs.Failed* methods with f (the jobs
// manager) when the Jobs given to NewServer is a wrapper that does not
// implement FailedJobs itself.
func WithFailedJobs(f FailedJobs) Option {
	return func(s *Server) { s.failed = f }
}

// failed returns the FailedJobs of the server, or ErrNoFailedJobs.
func (s *jobsService) failed() (FailedJobs, error) {
	if s.failedJobs != nil {
		return s.failedJobs, nil
	}
	f, ok := s.jobs.(FailedJobs)
	if !ok {
		return nil, ErrNoFailedJobs
	}
	return f, nil
}

// FailedList lists dead jobs (jobs.FailedList).
func (s *jobsService) FailedList(req *jobsv1.FailedListRequest, out *jobsv1.FailedJobs) error {
	f, err := s.failed()
	if err != nil {
		return err
	}
	dead, err := f.FailedList(s.ctx, req.GetPipeline(), int(max(req.GetLimit(), 0)))
	if err != nil {
		return err
	}
	out.Jobs = make([]*jobsv1.FailedJob, 0, len(dead))
	for _, d := range dead {
		out.Jobs = append(out.Jobs, DeadJobToProto(d))
	}
	return nil
}

// FailedShow returns one dead job (jobs.FailedShow).
func (s *jobsService) FailedShow(req *jobsv1.FailedShowRequest, out *jobsv1.FailedJob) error {
	f, err := s.failed()
	if err != nil {
		return err
	}
	d, err := f.FailedShow(s.ctx, req.GetPipeline(), req.GetId())
	if err != nil {
		return err
	}
	p := DeadJobToProto(d)
	out.Job, out.Reason, out.Attempts, out.DiedAt = p.Job, p.Reason, p.Attempts, p.DiedAt
	return nil
}

// FailedRetry publishes dead jobs again (jobs.FailedRetry).
func (s *jobsService) FailedRetry(req *jobsv1.FailedRequest, out *jobsv1.FailedIDs) error {
	f, err := s.failed()
	if err != nil {
		return err
	}
	out.Ids, err = f.FailedRetry(s.ctx, req.GetPipeline(), consumer.DeadSelection{IDs: req.GetIds(), All: req.GetAll()})
	return err
}

// FailedRemove deletes dead jobs (jobs.FailedRemove).
func (s *jobsService) FailedRemove(req *jobsv1.FailedRequest, out *jobsv1.FailedIDs) error {
	f, err := s.failed()
	if err != nil {
		return err
	}
	out.Ids, err = f.FailedRemove(s.ctx, req.GetPipeline(), consumer.DeadSelection{IDs: req.GetIds(), All: req.GetAll()})
	return err
}

// DeadJobToProto converts a dead job to the wire FailedJob.
func DeadJobToProto(d consumer.DeadJob) *jobsv1.FailedJob {
	return &jobsv1.FailedJob{
		Job:      JobToProto(d.Job),
		Reason:   d.Reason,
		Attempts: int64(d.Attempts),
		DiedAt:   unixNano(d.At),
	}
}

// DeadJobFromProto is the inverse of DeadJobToProto.
func DeadJobFromProto(p *jobsv1.FailedJob) consumer.DeadJob {
	var headers map[string][]string
	if len(p.GetJob().GetHeaders()) > 0 {
		headers = make(map[string][]string, len(p.GetJob().GetHeaders()))
		for k, v := range p.GetJob().GetHeaders() {
			headers[k] = v.GetValue()
		}
	}
	j := p.GetJob()
	return consumer.DeadJob{
		Job: consumer.Job{
			ID:       j.GetId(),
			Name:     j.GetJob(),
			Pipeline: j.GetOptions().GetPipeline(),
			Payload:  j.GetPayload(),
			Headers:  headers,
			Priority: j.GetOptions().GetPriority(),
			Key:      j.GetOptions().GetKey(),
			Delay:    time.Duration(j.GetOptions().GetDelay()) * time.Second,
		},
		Reason:   p.GetReason(),
		Attempts: int(p.GetAttempts()),
		At:       fromUnixNano(p.GetDiedAt()),
	}
}

// FailedList returns the dead jobs of pipeline ("" for every pipeline),
// at most limit when limit > 0.
func (c *Client) FailedList(ctx context.Context, pipeline string, limit int) ([]consumer.DeadJob, error) {
	out := &jobsv1.FailedJobs{}
	if err := c.call(ctx, "jobs.FailedList", &jobsv1.FailedListRequest{Pipeline: pipeline, Limit: int64(limit)}, out); err != nil {
		return nil, err
	}
	dead := make([]consumer.DeadJob, 0, len(out.GetJobs()))
	for _, p := range out.GetJobs() {
		dead = append(dead, DeadJobFromProto(p))
	}
	return dead, nil
}

// FailedShow returns the dead job with id, looked for in pipeline ("" for
// every pipeline).
func (c *Client) FailedShow(ctx context.Context, pipeline, id string) (consumer.DeadJob, error) {
	out := &jobsv1.FailedJob{}
	if err := c.call(ctx, "jobs.FailedShow", &jobsv1.FailedShowRequest{Id: id, Pipeline: pipeline}, out); err != nil {
		return consumer.DeadJob{}, err
	}
	return DeadJobFromProto(out), nil
}

// FailedRetry publishes the selected dead jobs of pipeline ("" for every
// pipeline) again and returns the ids retried. When the server names ids
// it did not find, the others were retried but their ids are not
// returned: list again to see what is left.
func (c *Client) FailedRetry(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	out := &jobsv1.FailedIDs{}
	err := c.call(ctx, "jobs.FailedRetry", &jobsv1.FailedRequest{Ids: sel.IDs, All: sel.All, Pipeline: pipeline}, out)
	return out.GetIds(), err
}

// FailedRemove deletes the selected dead jobs of pipeline ("" for every
// pipeline) and returns their ids.
func (c *Client) FailedRemove(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	out := &jobsv1.FailedIDs{}
	err := c.call(ctx, "jobs.FailedRemove", &jobsv1.FailedRequest{Ids: sel.IDs, All: sel.All, Pipeline: pipeline}, out)
	return out.GetIds(), err
}
