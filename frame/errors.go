package frame

import "errors"

// ErrBadReply is wrapped by errors about a worker reply body that is not a
// valid jobs reply.
var ErrBadReply = errors.New("frame: bad worker reply")

// Errors of the frame reader and of payload decoding. Every error a Reader
// returns wraps exactly one of these (or io.EOF for a stream that ended
// cleanly between two frames), so callers can tell a misconfigured worker
// from a broken one with errors.Is.
var (
	// ErrBadCommand: the worker process is not a worker at all. PHP printed
	// "Could not open input file: …" on stdout, the usual result of a wrong
	// script path in the worker command.
	ErrBadCommand = errors.New("frame: wrong worker command")
	// ErrNotFrame: the header CRC did not match. The error text quotes what
	// the worker printed on stdout (an echo, var_dump or print in the worker
	// is the usual cause: workers must log to stderr).
	ErrNotFrame = errors.New("frame: worker wrote to stdout something that is not a goridge frame")
	// ErrBadHeader: the CRC matched but the header is impossible (version
	// other than 1, header length outside 3..13 words).
	ErrBadHeader = errors.New("frame: bad frame header")
	// ErrTruncated: the stream ended inside a frame (in its options or
	// before the payload length announced by the header).
	ErrTruncated = errors.New("frame: stream ended inside a frame")
	// ErrBadOptions: a job reply does not carry exactly one option (the
	// context length).
	ErrBadOptions = errors.New("frame: job reply must carry exactly one option (the context length)")
	// ErrBadOffset: option 0 of a job reply is larger than its payload.
	ErrBadOffset = errors.New("frame: context length past the end of the payload")
	// ErrStream: the worker sent a streamed reply; jobs do not support
	// streams.
	ErrStream = errors.New("frame: streamed replies are not supported for jobs")
	// ErrUnexpectedControl: the worker answered a job with a control frame.
	ErrUnexpectedControl = errors.New("frame: unexpected control frame")
	// ErrHandshake: the pid handshake failed (wrong frame kind, bad JSON,
	// no positive pid).
	ErrHandshake = errors.New("frame: pid handshake failed")
)
