package rpc

import "errors"

// Sentinel errors of the rpc package. Match them with errors.Is.
var (
	// ErrNotRunning is returned by Dial when nothing listens on the
	// address (connection refused, or no unix socket file). The full
	// message reads "no supervisor is listening on ADDR: CAUSE".
	ErrNotRunning = errors.New("no supervisor is listening")
	// ErrBadAddress is returned for an address that is not
	// tcp://host:port or unix://path.
	ErrBadAddress = errors.New("rpc: address must be tcp://host:port or unix://path")
	// ErrAddressInUse is returned by Listen when another process already
	// serves the unix socket, or the path exists and is not a socket.
	ErrAddressInUse = errors.New("rpc: address in use")
	// ErrClientClosed is returned by Client methods after Close, and after
	// a call was interrupted by its ctx (the connection is then in an
	// unknown state and is closed; Dial again).
	ErrClientClosed = errors.New("rpc: client closed")
	// ErrNoJob is returned to a jobs.Push caller that sent no job.
	ErrNoJob = errors.New("rpc: request has no job")
	// ErrNoPipeline is returned for a job without options.pipeline.
	ErrNoPipeline = errors.New("rpc: job has no pipeline (options.pipeline)")
	// ErrNegativeDelay is returned for a job whose options.delay is < 0.
	ErrNegativeDelay = errors.New("rpc: job delay must not be negative")
	// ErrDelayTooLong is returned for a job whose options.delay does not
	// fit a time.Duration (about 292 years).
	ErrDelayTooLong = errors.New("rpc: job delay is too long")
	// ErrUnknownPlugin is returned by informer.Workers and resetter.Reset
	// for a plugin other than "" or "jobs".
	ErrUnknownPlugin = errors.New("rpc: unknown plugin (only \"jobs\" has workers)")
	// ErrNoWorkers is returned by informer.Workers and resetter.Reset when
	// the server was built without a Workers implementation.
	ErrNoWorkers = errors.New("rpc: no worker pool")
	// ErrUnknownPool is returned by resetter.Reset for a pool name that
	// names no pool.
	ErrUnknownPool = errors.New("rpc: unknown worker pool")
	// ErrBadResponse is returned by the Client when the reply frame does
	// not belong to the call (wrong sequence number).
	ErrBadResponse = errors.New("rpc: response does not match the request")
)

// ServerError is an error the server returned for a call; Message is the
// server's text, unchanged (for a Jobs or Workers method, the message of
// the error it returned).
//
// Err is set when the Client recognised the message: a *FrameLimitError
// for a request over the server's frame limit (Error then reads
// "jobs.Push: push of 64.0 MiB exceeds the RPC frame limit of 64 MiB
// (67108912 > 67108864 bytes)", and errors.Is(err, ErrRequestTooLarge)
// holds).
type ServerError struct {
	Method  string // for example "jobs.Push"
	Message string
	Err     error // nil, or the error Message stands for

	push *pushReportJSON // the report of a failed push (see PushReport)
}

func (e *ServerError) Error() string {
	if e.Err != nil {
		return e.Method + ": " + e.Err.Error()
	}
	return e.Method + ": " + e.Message
}

// Unwrap returns Err.
func (e *ServerError) Unwrap() error { return e.Err }
