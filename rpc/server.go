package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	netrpc "net/rpc"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	goridgerpc "github.com/roadrunner-server/goridge/v3/pkg/rpc"
)

// Jobs is the running set of pipelines the jobs.* service drives. The jobs
// manager implements it. Methods may be called concurrently from many
// connections; the ctx passed in is cancelled when the server shuts down.
type Jobs interface {
	// Push publishes the jobs and returns once the broker confirmed them.
	Push(ctx context.Context, jobs []consumer.Job) error
	// Pause stops consuming the named pipelines; pushing still works.
	Pause(ctx context.Context, pipelines []string) error
	// Resume starts consuming the named pipelines again.
	Resume(ctx context.Context, pipelines []string) error
	// List returns the names of all pipelines.
	List() []string
	// Declare creates a pipeline from its string keys (driver, name,
	// priority and the driver's config keys).
	Declare(ctx context.Context, pipeline map[string]string) error
	// Destroy stops and removes the named pipelines and returns the ones
	// it destroyed.
	Destroy(ctx context.Context, pipelines []string) ([]string, error)
	// Stat returns the state of every pipeline.
	Stat(ctx context.Context) ([]consumer.Stat, error)
}

// WorkerInfo describes one worker process for informer.Workers. It has the
// same fields as pool.WorkerInfo; cmd/supervisor converts.
type WorkerInfo struct {
	Pid        int
	State      string // "ready", "working", ...
	Jobs       uint64 // jobs executed by this process
	RSS        uint64 // resident set size, bytes
	Created    time.Time
	CurrentJob string // id of the running job, empty when idle
	// CurrentJobSince is when the worker was handed CurrentJob; zero
	// when idle.
	CurrentJobSince time.Time
	// Pool is the name of the worker's pool ("default" for jobs.pool).
	Pool string
}

// Workers is the worker pool as seen by informer.Workers and
// resetter.Reset.
type Workers interface {
	// Workers lists the worker processes.
	Workers() []WorkerInfo
	// Reset replaces every worker, one at a time, without losing a job.
	Reset(ctx context.Context) error
}

// PoolInfo describes one worker pool for informer.Workers.
type PoolInfo struct {
	Name string
	// Min and Max bound the size (equal when the pool does not scale).
	Min, Max int
	// Size is the size the pool keeps now; Running the workers in
	// service; Waiting the jobs waiting for a free worker.
	Size, Running, Waiting int
	// ScaleUps and ScaleDowns count scaling steps since the start.
	ScaleUps, ScaleDowns uint64
	// Pipelines are the pipelines that run on the pool, sorted.
	Pipelines []string
}

// PoolLister is implemented by Workers that can describe their pools;
// informer.Workers then lists them next to the workers.
type PoolLister interface {
	Pools() []PoolInfo
}

// PoolResetter is implemented by Workers with named pools: resetter.Reset
// with a pool name resets that pool only. Without it, a request naming a
// pool fails with ErrUnknownPool.
type PoolResetter interface {
	// ResetPool is Reset for the pool named pool; an unknown name is an
	// error wrapping ErrUnknownPool.
	ResetPool(ctx context.Context, pool string) error
}

// Server serves the jobs, informer and resetter RPC services over goridge
// frames, with protobuf and JSON codecs (see the package documentation).
// A Server may serve several listeners at once.
type Server struct {
	jobs         Jobs
	workers      Workers
	log          *slog.Logger
	frameTimeout time.Duration
	maxCalls     int           // calls in progress per connection
	conns        atomic.Int64  // connection goroutines running
	slots        chan struct{} // one element per connection served; its capacity is the limit
	budget       *budget       // request bytes in flight across connections
	failed       FailedJobs    // WithFailedJobs; nil: jobs itself, when it is one
}

// Option configures a Server built by NewServer.
type Option func(*Server)

// WithFrameTimeout sets how long the rest of a request frame may take to
// arrive once its first byte has, and how long writing one reply may take
// (DefaultFrameTimeout unless set). A connection whose request frame
// misses it is closed once its calls in progress have finished and got
// their replies. A connection whose reply write misses it (the client
// does not read its replies) is closed at once: the calls in progress
// finish, their replies are lost. Time between frames is not limited, so
// clients may keep a connection open and idle. A d <= 0 keeps the
// default.
func WithFrameTimeout(d time.Duration) Option {
	return func(s *Server) {
		if d > 0 {
			s.frameTimeout = d
		}
	}
}

// WithMaxCallsInProgress sets how many calls one connection may have in
// progress at once (DefaultMaxCallsInProgress unless set). A call is in
// progress from the arrival of its request until its reply is written.
// When the limit is reached the server stops reading that connection
// until a reply has been written: the later requests wait in the socket
// buffers, so a client that pipelines past the limit must read replies
// as it writes (see the package doc). An n <= 0 keeps the default.
func WithMaxCallsInProgress(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.maxCalls = n
		}
	}
}

// WithMaxConnections sets how many connections the server serves at once,
// across all its listeners (DefaultMaxConnections unless set). At the
// limit it accepts no further connection until one closes: new clients
// wait in the listener's backlog, connected but unanswered (their calls
// time out by their own deadlines). An n <= 0 keeps the default.
func WithMaxConnections(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.slots = make(chan struct{}, n)
		}
	}
}

// WithMaxInflightBytes sets the request bytes the server holds at once
// across all connections (DefaultMaxInflightBytes unless set). A request
// frame reserves the payload size its header announces before its body
// is read, and holds it until its reply is written; while the others hold
// too much, reading that connection waits, up to the frame timeout, and
// then the request is refused with an error reply (ErrServerBusy). No
// single frame may announce more than the budget (nor MaxRequestSize): it
// is refused with a *FrameLimitError. An n <= 0 keeps the default.
func WithMaxInflightBytes(n int64) Option {
	return func(s *Server) {
		if n > 0 {
			s.budget = newBudget(n)
		}
	}
}

// NewServer returns a server that forwards calls to j and w. w may be nil:
// informer.Workers and resetter.Reset then fail with ErrNoWorkers. A nil
// log discards log output.
func NewServer(j Jobs, w Workers, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		jobs: j, workers: w, log: log, frameTimeout: DefaultFrameTimeout, maxCalls: DefaultMaxCallsInProgress,
		slots: make(chan struct{}, DefaultMaxConnections), budget: newBudget(DefaultMaxInflightBytes),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Serve listens on listen (tcp://host:port or unix://path, see Listen) and
// serves connections until ctx is done. It then closes the listener and
// every connection, waits for all its goroutines (calls in progress see
// their ctx cancelled) and returns nil. A listen or accept failure is
// returned as an error. A connection also ends, with its goroutine, when
// the client closes it or breaks the rules in the package documentation
// (Transport), for example by stalling in the middle of a frame or by
// not reading its replies.
func (s *Server) Serve(ctx context.Context, listen string) error {
	ln, err := Listen(ctx, listen)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln)
}

// retryableAccept reports whether an accept error passes: a timeout, or
// the process or system out of file descriptors or memory for a moment
// (EMFILE, ENFILE, ENOBUFS, ENOMEM), or a connection aborted before it was
// accepted (ECONNABORTED). The server keeps serving its open connections
// and accepts again after a backoff instead of shutting the supervisor
// down.
func retryableAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ServeListener is Serve on a listener the caller opened (for example with
// Listen, to learn the port before serving). It takes ownership of ln and
// closes it before returning.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	if _, err := s.newRPCServer(ctx, ""); err != nil {
		_ = ln.Close()
		return err
	}
	t := &tracker{conns: make(map[net.Conn]struct{})}
	stop := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		t.closeAll()
	})
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer t.closeAll()
	defer ln.Close()

	backoff := 5 * time.Millisecond
	for {
		select {
		case s.slots <- struct{}{}: // at the limit, wait for a connection to end
		case <-ctx.Done():
			return nil
		}
		conn, err := ln.Accept()
		if err != nil {
			<-s.slots
			if ctx.Err() != nil {
				return nil
			}
			if retryableAccept(err) {
				s.log.Warn("rpc: accept", "err", err)
				if sleepCtx(ctx, backoff) != nil {
					return nil
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("rpc: accept on %s: %w", ln.Addr(), err)
		}
		backoff = 5 * time.Millisecond
		if !t.add(conn) {
			<-s.slots
			_ = conn.Close()
			return nil
		}
		s.conns.Add(1)
		wg.Go(func() {
			defer func() { <-s.slots }()
			defer s.conns.Add(-1)
			defer t.remove(conn)
			lc := newLimitConn(conn, s.frameTimeout).withBudget(ctx, s.budget)
			defer lc.releaseAll() // ServeCodec returns once every reply is written
			// One net/rpc server per connection, so each call knows its peer
			// (the origin of the actions it logs).
			remote := ""
			if a := conn.RemoteAddr(); a != nil {
				remote = a.String()
			}
			srv, err := s.newRPCServer(ctx, remote)
			if err != nil {
				s.log.Error("rpc: serving connection", "err", err)
				return
			}
			srv.ServeCodec(&guardedCodec{
				inner: goridgerpc.NewCodec(lc),
				conn:  lc,
				log:   s.log,
				calls: make(chan struct{}, s.maxCalls),
			})
		})
	}
}

// newRPCServer builds the net/rpc server of one connection from remote
// with the three services bound to ctx (the ctx every call runs under,
// carrying the rpc origin; see withOrigin).
func (s *Server) newRPCServer(ctx context.Context, remote string) (*netrpc.Server, error) {
	ctx = withOrigin(ctx, remote)
	srv := netrpc.NewServer()
	services := []struct {
		name string
		rcvr any
	}{
		{"jobs", &jobsService{ctx: ctx, jobs: s.jobs, failedJobs: s.failed}},
		{"informer", &informerService{workers: s.workers}},
		{"resetter", &resetterService{ctx: ctx, workers: s.workers}},
	}
	for _, sv := range services {
		if err := srv.RegisterName(sv.name, sv.rcvr); err != nil {
			return nil, fmt.Errorf("rpc: register %s: %w", sv.name, err)
		}
	}
	return srv, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tracker holds the open connections so shutdown can close them.
type tracker struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// add registers c; it returns false once closeAll has run.
func (t *tracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tracker) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for c := range t.conns {
		_ = c.Close()
	}
}

// guardedCodec turns a panic inside goridge's codec into an error that
// ends the connection. goridge v3.8.3 indexes the payload with the
// client-supplied method length without a bounds check, so a malformed
// frame would otherwise crash the supervisor. It also tells conn which
// seq each reply answers (see limitConn.startReply), writes one reply at a
// time, and bounds the calls in progress.
//
// Bounding the calls: net/rpc reads requests in one goroutine and runs
// each call in a goroutine of its own, which ends once the reply is
// written; a client that never reads its replies would otherwise make it
// start goroutines without end. Every request header net/rpc reads
// successfully gets exactly one WriteResponse (the call's reply, or the
// error reply to a request it cannot serve), so ReadRequestHeader takes a
// slot of calls before reading (waiting while all are taken) and keeps it
// on success; WriteResponse gives it back once the reply is written or
// has failed.
type guardedCodec struct {
	inner *goridgerpc.Codec
	conn  *limitConn
	log   *slog.Logger
	calls chan struct{} // one element per call in progress; its capacity is the limit
	wmu   sync.Mutex    // held while a reply is written
}

func (g *guardedCodec) recovered(op string, err *error) {
	if r := recover(); r != nil {
		g.log.Warn("rpc: malformed frame", "op", op, "panic", r)
		*err = fmt.Errorf("rpc: %s: malformed frame: %v", op, r)
	}
}

func (g *guardedCodec) ReadRequestHeader(r *netrpc.Request) (err error) {
	g.calls <- struct{}{}
	defer func() {
		if err != nil {
			<-g.calls // no reply follows
		}
	}()
	defer g.recovered("read request", &err)
	err = g.inner.ReadRequestHeader(r)
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case g.conn.refused != nil:
		err = g.conn.err
		g.refuse()
	case g.conn.err != nil:
		// limitConn refused the frame; goridge's errors do not unwrap.
		err = g.conn.err
		g.log.Warn("rpc: closing connection", "remote", g.conn.RemoteAddr().String(), "err", err)
	default:
		g.log.Debug("rpc: read request", "err", err)
	}
	return err
}

// refuse answers the frame limitConn refused with an error reply carrying
// the reason, then reads past the frame's payload so the client, still
// writing it, gets to read the reply before the connection closes.
func (g *guardedCodec) refuse() {
	r := g.conn.refused
	g.log.Warn("rpc: refusing request, closing connection", "remote", g.conn.RemoteAddr().String(), "err", r.err)
	g.wmu.Lock()
	_ = g.inner.WriteResponse(&netrpc.Response{Seq: uint64(r.seq), Error: r.err.Error()}, nil) // goridge returns the reply text as an error
	g.wmu.Unlock()
	if err := g.conn.discard(); err != nil {
		g.log.Debug("rpc: discarding a refused request", "err", err)
	}
}

func (g *guardedCodec) ReadRequestBody(body any) (err error) {
	defer g.recovered("read body", &err)
	return g.inner.ReadRequestBody(body)
}

func (g *guardedCodec) WriteResponse(r *netrpc.Response, body any) (err error) {
	defer func() { <-g.calls }()
	g.wmu.Lock()
	defer g.wmu.Unlock()
	timedOut := g.conn.werr != nil
	g.conn.startReply(uint32(r.Seq))
	defer g.conn.endReply()
	defer g.recovered("write response", &err)
	err = g.inner.WriteResponse(r, body)
	if !timedOut && g.conn.werr != nil {
		// goridge drops the write error of an error reply; werr has it.
		g.log.Warn("rpc: closing connection", "remote", g.conn.RemoteAddr().String(), "err", g.conn.werr)
		err = g.conn.werr
	}
	return err
}

func (g *guardedCodec) Close() error { return g.inner.Close() }
