package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	netrpc "net/rpc"
	"sync"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc/jobsv1"
	goridgerpc "github.com/roadrunner-server/goridge/v3/pkg/rpc"
	"google.golang.org/protobuf/proto"
)

// Client talks to a running supervisor over one connection with the
// protobuf codec. Calls are serialised; a Client is safe for concurrent
// use. It starts no goroutines: each call writes its request and reads the
// reply itself, bounded by the ctx deadline and cancellation.
//
// When a call's ctx ends while the call is on the wire, the connection is
// closed (its state is unknown) and that call and every later one fail;
// the call returns the ctx error, later ones ErrClientClosed.
type Client struct {
	addr  string
	conn  net.Conn
	codec *goridgerpc.ClientCodec

	mu     sync.Mutex
	seq    uint64
	broken error // set once the connection can no longer be used
}

// Dial connects to the supervisor at addr (tcp://host:port or
// unix://path). When nothing listens there the error wraps ErrNotRunning
// and reads "no supervisor is listening on ADDR: connection refused" (or
// ": no such file or directory" for a missing unix socket).
func Dial(ctx context.Context, addr string) (*Client, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		for _, cause := range []error{syscall.ECONNREFUSED, syscall.ENOENT} {
			if errors.Is(err, cause) {
				return nil, fmt.Errorf("%w on %s: %w", ErrNotRunning, addr, cause)
			}
		}
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	return &Client{addr: addr, conn: conn, codec: goridgerpc.NewClientCodec(conn)}, nil
}

// Close closes the connection. It is idempotent; calls after Close fail
// with ErrClientClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil
	}
	c.broken = ErrClientClosed
	return c.conn.Close()
}

// call performs one request/reply exchange.
func (c *Client) call(ctx context.Context, method string, args, reply proto.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return fmt.Errorf("%s: %w", method, c.broken)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	dl, _ := ctx.Deadline() // zero time: no deadline
	if err := c.conn.SetDeadline(dl); err != nil {
		return c.fail(fmt.Errorf("%s: %w", method, err))
	}
	interrupt := context.AfterFunc(ctx, func() {
		_ = c.conn.SetDeadline(time.Unix(1, 0)) // unblocks the read or write at once
	})
	err := c.exchange(method, args, reply)
	if !interrupt() {
		// The ctx ended during the call: the deadline may now be in the
		// past at any moment, so the connection cannot be reused.
		ctxErr := ctx.Err()
		_ = c.fail(ErrClientClosed)
		if err != nil {
			var se *ServerError
			if !errors.As(err, &se) {
				return fmt.Errorf("%s: %w", method, ctxErr)
			}
		}
		return err
	}
	if err == nil {
		return nil
	}
	var se *ServerError
	if errors.As(err, &se) {
		return err
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	} else if !dl.IsZero() && !time.Now().Before(dl) {
		err = context.DeadlineExceeded
	}
	return c.fail(fmt.Errorf("%s: %w", method, err))
}

// exchange writes the request and reads the matching reply.
func (c *Client) exchange(method string, args, reply proto.Message) error {
	c.seq++
	seq := c.seq & 0xFFFFFFFF // the frame carries a uint32 seq
	if err := c.codec.WriteRequest(&netrpc.Request{ServiceMethod: method, Seq: seq}, args); err != nil {
		return err
	}
	var resp netrpc.Response
	if err := c.codec.ReadResponseHeader(&resp); err != nil {
		return err
	}
	if resp.Seq != seq {
		_ = c.codec.ReadResponseBody(nil)
		return fmt.Errorf("%w: seq %d, want %d", ErrBadResponse, resp.Seq, seq)
	}
	if resp.Error != "" {
		if err := c.codec.ReadResponseBody(nil); err != nil {
			return err
		}
		if fl, ok := parseFrameLimit(resp.Error); ok {
			fl.Op = "request"
			if method == "jobs.Push" || method == "jobs.PushBatch" {
				fl.Op = "push"
			}
			return &ServerError{Method: method, Message: resp.Error, Err: fl}
		}
		msg, push := splitPushReport(resp.Error)
		return &ServerError{Method: method, Message: msg, push: push}
	}
	return c.codec.ReadResponseBody(reply)
}

// fail marks the client unusable, closes the connection and returns err.
func (c *Client) fail(err error) error {
	if c.broken == nil {
		c.broken = ErrClientClosed
		_ = c.conn.Close()
	}
	return err
}

// Push publishes one job and returns once the supervisor confirmed it;
// otherwise PushReport(1, err) tells whether it failed or is in doubt.
// job.Delay is rounded up to whole seconds. An empty job.ID makes the
// server generate one.
func (c *Client) Push(ctx context.Context, job consumer.Job) error {
	return c.call(ctx, "jobs.Push", &jobsv1.PushRequest{Job: JobToProto(job)}, &jobsv1.Empty{})
}

// PushBatch publishes the jobs in one call. When not every job was
// confirmed, PushReport(len(jobs), err) tells which were confirmed,
// failed and in doubt.
func (c *Client) PushBatch(ctx context.Context, jobs []consumer.Job) error {
	req := &jobsv1.PushBatchRequest{Jobs: make([]*jobsv1.Job, 0, len(jobs))}
	for _, j := range jobs {
		req.Jobs = append(req.Jobs, JobToProto(j))
	}
	return c.call(ctx, "jobs.PushBatch", req, &jobsv1.Empty{})
}

// Pause stops consuming the named pipelines.
func (c *Client) Pause(ctx context.Context, pipelines ...string) error {
	return c.call(ctx, "jobs.Pause", &jobsv1.Pipelines{Pipelines: pipelines}, &jobsv1.Empty{})
}

// Resume starts consuming the named pipelines again.
func (c *Client) Resume(ctx context.Context, pipelines ...string) error {
	return c.call(ctx, "jobs.Resume", &jobsv1.Pipelines{Pipelines: pipelines}, &jobsv1.Empty{})
}

// List returns the names of all pipelines.
func (c *Client) List(ctx context.Context) ([]string, error) {
	out := &jobsv1.Pipelines{}
	if err := c.call(ctx, "jobs.List", &jobsv1.Empty{}, out); err != nil {
		return nil, err
	}
	return out.GetPipelines(), nil
}

// Declare creates a pipeline from its keys (driver, name, priority and
// the driver's config keys, all as strings).
func (c *Client) Declare(ctx context.Context, pipeline map[string]string) error {
	return c.call(ctx, "jobs.Declare", &jobsv1.DeclareRequest{Pipeline: pipeline}, &jobsv1.Empty{})
}

// Destroy removes the named pipelines and returns the ones destroyed.
func (c *Client) Destroy(ctx context.Context, pipelines ...string) ([]string, error) {
	out := &jobsv1.Pipelines{}
	if err := c.call(ctx, "jobs.Destroy", &jobsv1.Pipelines{Pipelines: pipelines}, out); err != nil {
		return out.GetPipelines(), err
	}
	return out.GetPipelines(), nil
}

// Stat returns the state of every pipeline.
func (c *Client) Stat(ctx context.Context) ([]consumer.Stat, error) {
	out := &jobsv1.Stats{}
	if err := c.call(ctx, "jobs.Stat", &jobsv1.Empty{}, out); err != nil {
		return nil, err
	}
	stats := make([]consumer.Stat, 0, len(out.GetStats()))
	for _, s := range out.GetStats() {
		stats = append(stats, StatFromProto(s))
	}
	return stats, nil
}

// Workers lists the worker processes.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	out := &jobsv1.WorkerList{}
	if err := c.call(ctx, "informer.Workers", &jobsv1.WorkersRequest{Plugin: "jobs"}, out); err != nil {
		return nil, err
	}
	infos := make([]WorkerInfo, 0, len(out.GetWorkers()))
	for _, w := range out.GetWorkers() {
		infos = append(infos, WorkerFromProto(w))
	}
	return infos, nil
}

// Pools describes the worker pools (empty from a supervisor that does not
// list them).
func (c *Client) Pools(ctx context.Context) ([]PoolInfo, error) {
	out := &jobsv1.WorkerList{}
	if err := c.call(ctx, "informer.Workers", &jobsv1.WorkersRequest{Plugin: "jobs"}, out); err != nil {
		return nil, err
	}
	pools := make([]PoolInfo, 0, len(out.GetPools()))
	for _, p := range out.GetPools() {
		pools = append(pools, PoolInfo{
			Name: p.GetName(), Min: int(p.GetMinWorkers()), Max: int(p.GetMaxWorkers()),
			Size: int(p.GetSize()), Running: int(p.GetRunning()), Waiting: int(p.GetWaiting()),
			ScaleUps: p.GetScaleUps(), ScaleDowns: p.GetScaleDowns(), Pipelines: p.GetPipelines(),
		})
	}
	return pools, nil
}

// Reset replaces every worker one at a time and returns when done.
func (c *Client) Reset(ctx context.Context) error {
	return c.ResetPool(ctx, "")
}

// ResetPool replaces the workers of the pool named pool (every pool when
// empty) one at a time and returns when done.
func (c *Client) ResetPool(ctx context.Context, pool string) error {
	return c.call(ctx, "resetter.Reset", &jobsv1.ResetRequest{Plugin: "jobs", Pool: pool}, &jobsv1.ResetResponse{})
}
