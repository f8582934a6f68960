package frame

import "errors"

// ErrBadReply is wrapped by errors about a worker reply body that is not a
// valid jobs reply.
var ErrBadReply = errors.New("frame: bad worker reply")
