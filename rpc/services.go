package rpc

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/rpc/jobsv1"
)

// withOrigin returns ctx marked as the origin of calls from the RPC peer
// at remote: the manager and the pool log their control-plane actions
// (pause, resume, declare, destroy, reset) with it.
func withOrigin(ctx context.Context, remote string) context.Context {
	if remote == "@" { // an unnamed unix socket peer
		remote = ""
	}
	return jobs.WithOrigin(ctx, jobs.Origin{Source: "rpc", Remote: remote})
}

// jobsService is registered as "jobs". Its exported methods are the RPC
// methods; net/rpc requires every exported method to have the RPC shape.
type jobsService struct {
	ctx        context.Context
	jobs       Jobs
	failedJobs FailedJobs // nil: jobs, when it implements FailedJobs
}

// Push publishes one job (jobs.Push). When the manager does not confirm
// it the error is a *PushError.
func (s *jobsService) Push(req *jobsv1.PushRequest, _ *jobsv1.Empty) error {
	if req.GetJob() == nil {
		return ErrNoJob
	}
	j, err := JobFromProto(req.GetJob())
	if err != nil {
		return err
	}
	if err := s.jobs.Push(s.ctx, []consumer.Job{j}); err != nil {
		return newPushError(1, err)
	}
	return nil
}

// PushBatch publishes the jobs (jobs.PushBatch). Nothing is published
// when one of the jobs is invalid; an empty batch is a no-op. When the
// manager does not confirm every job the error is a *PushError.
func (s *jobsService) PushBatch(req *PushBatchArgs, _ *jobsv1.Empty) error {
	out, err := req.consumerJobs()
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return nil
	}
	if err := s.jobs.Push(s.ctx, out); err != nil {
		return newPushError(len(out), err)
	}
	return nil
}

// Pause stops consuming the pipelines (jobs.Pause).
func (s *jobsService) Pause(req *jobsv1.Pipelines, _ *jobsv1.Empty) error {
	return s.jobs.Pause(s.ctx, req.GetPipelines())
}

// Resume starts consuming the pipelines again (jobs.Resume).
func (s *jobsService) Resume(req *jobsv1.Pipelines, _ *jobsv1.Empty) error {
	return s.jobs.Resume(s.ctx, req.GetPipelines())
}

// List returns every pipeline name (jobs.List).
func (s *jobsService) List(_ *jobsv1.Empty, out *jobsv1.Pipelines) error {
	out.Pipelines = s.jobs.List()
	return nil
}

// Declare creates a pipeline (jobs.Declare).
func (s *jobsService) Declare(req *jobsv1.DeclareRequest, _ *jobsv1.Empty) error {
	return s.jobs.Declare(s.ctx, req.GetPipeline())
}

// Destroy removes pipelines and returns the destroyed ones (jobs.Destroy).
func (s *jobsService) Destroy(req *jobsv1.Pipelines, out *jobsv1.Pipelines) error {
	done, err := s.jobs.Destroy(s.ctx, req.GetPipelines())
	out.Pipelines = done
	return err
}

// Stat returns the state of every pipeline (jobs.Stat).
func (s *jobsService) Stat(_ *jobsv1.Empty, out *jobsv1.Stats) error {
	stats, err := s.jobs.Stat(s.ctx)
	if err != nil {
		return err
	}
	out.Stats = make([]*jobsv1.Stat, 0, len(stats))
	for _, st := range stats {
		out.Stats = append(out.Stats, StatToProto(st))
	}
	return nil
}

// informerService is registered as "informer".
type informerService struct {
	workers Workers
}

// Workers lists the worker processes (informer.Workers).
func (s *informerService) Workers(req *jobsv1.WorkersRequest, out *jobsv1.WorkerList) error {
	if err := checkPlugin(req.GetPlugin(), s.workers); err != nil {
		return err
	}
	infos := s.workers.Workers()
	out.Workers = make([]*jobsv1.Worker, 0, len(infos))
	for _, w := range infos {
		out.Workers = append(out.Workers, WorkerToProto(w))
	}
	if pl, ok := s.workers.(PoolLister); ok {
		for _, p := range pl.Pools() {
			out.Pools = append(out.Pools, &jobsv1.Pool{
				Name: p.Name, MinWorkers: int64(p.Min), MaxWorkers: int64(p.Max),
				Size: int64(p.Size), Running: int64(p.Running), Waiting: int64(p.Waiting),
				ScaleUps: p.ScaleUps, ScaleDowns: p.ScaleDowns, Pipelines: p.Pipelines,
			})
		}
	}
	return nil
}

// resetterService is registered as "resetter".
type resetterService struct {
	ctx     context.Context
	workers Workers
}

// Reset replaces every worker (resetter.Reset), or those of the pool the
// request names.
func (s *resetterService) Reset(req *jobsv1.ResetRequest, out *jobsv1.ResetResponse) error {
	if err := checkPlugin(req.GetPlugin(), s.workers); err != nil {
		return err
	}
	var err error
	switch pr, ok := s.workers.(PoolResetter); {
	case req.GetPool() == "":
		err = s.workers.Reset(s.ctx)
	case ok:
		err = pr.ResetPool(s.ctx, req.GetPool())
	default:
		err = fmt.Errorf("%w: %q", ErrUnknownPool, req.GetPool())
	}
	if err != nil {
		return err
	}
	out.Ok = true
	return nil
}

func checkPlugin(plugin string, w Workers) error {
	if plugin != "" && plugin != "jobs" {
		return fmt.Errorf("%w: %q", ErrUnknownPlugin, plugin)
	}
	if w == nil {
		return ErrNoWorkers
	}
	return nil
}

// JobFromProto converts a jobs.v1 Job to a consumer.Job: delay seconds
// become a time.Duration, headers a map[string][]string, and an empty id is
// replaced by a random UUID (RoadRunner rejects an empty id; Pipevisor
// generates one). It fails with ErrNoPipeline when options.pipeline is
// empty, with ErrNegativeDelay when options.delay < 0 and with
// ErrDelayTooLong when it overflows a time.Duration. The Kafka-only
// options topic, metadata, offset and partition are not carried over.
func JobFromProto(pj *jobsv1.Job) (consumer.Job, error) {
	opts := pj.GetOptions()
	var headers map[string][]string
	if len(pj.GetHeaders()) > 0 {
		headers = make(map[string][]string, len(pj.GetHeaders()))
		for k, v := range pj.GetHeaders() {
			headers[k] = v.GetValue()
		}
	}
	return jobFromFields(fields{
		id:       pj.GetId(),
		name:     pj.GetJob(),
		pipeline: opts.GetPipeline(),
		key:      opts.GetKey(),
		payload:  pj.GetPayload(),
		headers:  headers,
		priority: opts.GetPriority(),
		delay:    opts.GetDelay(),
		autoAck:  opts.GetAutoAck(),
	})
}

// jobFromFields checks a job's values and makes them a consumer.Job (see
// JobFromProto).
func jobFromFields(f fields) (consumer.Job, error) {
	id := f.id
	if id == "" {
		id = uuid.NewString()
	}
	if f.pipeline == "" {
		return consumer.Job{}, fmt.Errorf("job %q: %w", id, ErrNoPipeline)
	}
	if f.delay < 0 {
		return consumer.Job{}, fmt.Errorf("job %q: %w (got %d)", id, ErrNegativeDelay, f.delay)
	}
	if f.delay > int64(math.MaxInt64/time.Second) {
		return consumer.Job{}, fmt.Errorf("job %q: %w (got %d seconds)", id, ErrDelayTooLong, f.delay)
	}
	return consumer.Job{
		ID:       id,
		Name:     f.name,
		Pipeline: f.pipeline,
		Payload:  f.payload,
		Headers:  f.headers,
		Delay:    time.Duration(f.delay) * time.Second,
		Priority: f.priority,
		Key:      f.key,
		AutoAck:  f.autoAck,
	}, nil
}

// JobToProto converts a consumer.Job to a jobs.v1 Job. The delay is
// rounded up to whole seconds, the unit of the wire format.
func JobToProto(j consumer.Job) *jobsv1.Job {
	var headers map[string]*jobsv1.HeaderValue
	if len(j.Headers) > 0 {
		headers = make(map[string]*jobsv1.HeaderValue, len(j.Headers))
		for k, v := range j.Headers {
			headers[k] = &jobsv1.HeaderValue{Value: v}
		}
	}
	delay := int64(j.Delay / time.Second)
	if j.Delay%time.Second > 0 {
		delay++
	}
	return &jobsv1.Job{
		Job:     j.Name,
		Id:      j.ID,
		Payload: j.Payload,
		Headers: headers,
		Options: &jobsv1.Options{
			Priority: j.Priority,
			Pipeline: j.Pipeline,
			Delay:    delay,
			AutoAck:  j.AutoAck,
			Key:      j.Key,
		},
	}
}

// StatToProto converts a consumer.Stat to the wire Stat. The RoadRunner
// fields carry what RoadRunner's driver of the same name reports (see
// RoadRunnerCounts); Pipevisor's own numbers go to queued (Ready), running
// (Active), waiting_delay (Delayed), the counters, consuming and error.
func StatToProto(st consumer.Stat) *jobsv1.Stat {
	prio := st.Priority
	if prio < 0 {
		prio = 0
	}
	rr := RoadRunnerCounts(st)
	return &jobsv1.Stat{
		Pipeline:     st.Pipeline,
		Driver:       st.Driver,
		Queue:        st.Queue,
		Active:       rr.Active,
		Delayed:      rr.Delayed,
		Reserved:     rr.Reserved,
		Ready:        st.Consuming,
		Priority:     uint64(prio),
		Queued:       st.Ready,
		Acked:        st.Acked,
		Retried:      st.Retried,
		Requeued:     st.Requeued,
		Dead:         st.Dead,
		Consuming:    st.Consuming,
		Error:        st.Error,
		Running:      st.Active,
		WaitingDelay: st.Delayed,
	}
}

// RRCounts are the numbers of RoadRunner's jobs.Stat: never negative.
type RRCounts struct {
	Active, Delayed, Reserved int64
}

// RoadRunnerCounts returns active, delayed and reserved as RoadRunner's
// driver named st.Driver reports them, from Pipevisor's exact numbers
// (unknown ones count as 0, as RoadRunner has no "unknown"):
//   - memory: active = jobs queued (Ready) + running (Active): every job
//     pushed and not yet settled that is not waiting for a delay;
//     delayed = jobs waiting for their delay.
//   - amqp: active = messages ready in the queue (a passive declare;
//     deliveries held by consumers are not counted); delayed = messages
//     in the pipeline's delay queues.
//   - sqs: active = ApproximateNumberOfMessages, delayed =
//     ApproximateNumberOfMessagesDelayed, reserved =
//     ApproximateNumberOfMessagesNotVisible.
//   - kafka: all 0 (RoadRunner's kafka driver reports none of them).
//
// Other drivers get the memory rule.
func RoadRunnerCounts(st consumer.Stat) RRCounts {
	n := func(v int64) int64 { return max(v, 0) }
	switch st.Driver {
	case "amqp":
		return RRCounts{Active: n(st.Ready), Delayed: n(st.Delayed)}
	case "sqs":
		return RRCounts{Active: n(st.Ready), Delayed: n(st.Delayed), Reserved: n(st.Reserved)}
	case "kafka":
		return RRCounts{}
	default:
		return RRCounts{Active: n(st.Ready) + n(st.Active), Delayed: n(st.Delayed), Reserved: n(st.Reserved)}
	}
}

// StatFromProto is the inverse of StatToProto: it reads Pipevisor's own
// fields (a RoadRunner server's replies have none of them).
func StatFromProto(ps *jobsv1.Stat) consumer.Stat {
	return consumer.Stat{
		Pipeline:  ps.GetPipeline(),
		Driver:    ps.GetDriver(),
		Queue:     ps.GetQueue(),
		Priority:  int64(ps.GetPriority()),
		Ready:     ps.GetQueued(),
		Active:    ps.GetRunning(),
		Delayed:   ps.GetWaitingDelay(),
		Reserved:  ps.GetReserved(),
		Acked:     ps.GetAcked(),
		Retried:   ps.GetRetried(),
		Requeued:  ps.GetRequeued(),
		Dead:      ps.GetDead(),
		Consuming: ps.GetConsuming() || ps.GetReady(),
		Error:     ps.GetError(),
	}
}

// WorkerToProto converts a WorkerInfo to the wire Worker (times as Unix
// nanoseconds, 0 for the zero time).
func WorkerToProto(w WorkerInfo) *jobsv1.Worker {
	return &jobsv1.Worker{
		Pid:               int64(w.Pid),
		Status:            w.State,
		NumExecs:          w.Jobs,
		Created:           unixNano(w.Created),
		MemoryUsage:       w.RSS,
		CurrentJob:        w.CurrentJob,
		CurrentJobStarted: unixNano(w.CurrentJobSince),
		Pool:              w.Pool,
	}
}

// unixNano is t as Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano.
func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// WorkerFromProto is the inverse of WorkerToProto.
func WorkerFromProto(pw *jobsv1.Worker) WorkerInfo {
	return WorkerInfo{
		Pid:             int(pw.GetPid()),
		State:           pw.GetStatus(),
		Jobs:            pw.GetNumExecs(),
		RSS:             pw.GetMemoryUsage(),
		Created:         fromUnixNano(pw.GetCreated()),
		CurrentJob:      pw.GetCurrentJob(),
		CurrentJobSince: fromUnixNano(pw.GetCurrentJobStarted()),
		Pool:            pw.GetPool(),
	}
}
