package rpc

import (
	"errors"
	"fmt"
	"net"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"

	"github.com/pipevisor/pipevisor/frame"
)

// MaxRequestSize is the largest payload an RPC request frame may announce
// (64 MiB: a PushBatch of thousands of jobs fits many times over).
const MaxRequestSize = 64 << 20

// ErrRequestTooLarge ends a connection whose request frame announces a
// payload over MaxRequestSize.
var ErrRequestTooLarge = errors.New("rpc: request frame too large")

// limitConn passes a connection's bytes through to goridge's codec and
// checks every frame header on its way: goridge allocates a frame's whole
// announced payload as soon as it has read the header, so a 20-byte header
// announcing 4 GiB would make the server allocate 4 GiB (and, where that
// fails, abort the process) before one payload byte arrived. A header
// announcing more than MaxRequestSize fails the read instead, before
// goridge sees its last byte, and the connection ends.
type limitConn struct {
	net.Conn
	hdr  [frame.HeaderSize]byte
	have int   // header bytes seen of the current frame
	skip int   // option and payload bytes left of the current frame
	err  error // returned by the next Read: the bytes before it went out
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	for i := 0; i < n; {
		if c.skip > 0 {
			k := min(c.skip, n-i)
			c.skip -= k
			i += k
			continue
		}
		start := i - c.have // where the header began, if in this read
		k := copy(c.hdr[c.have:], p[i:n])
		c.have += k
		i += k
		if c.have < frame.HeaderSize {
			continue
		}
		c.have = 0
		h := c.hdr[:]
		f := gf.From(h, nil)
		size := int64(f.ReadPayloadLen(h))
		if size > MaxRequestSize {
			c.err = fmt.Errorf("%w: it announces %d bytes, the limit is %d", ErrRequestTooLarge, size, MaxRequestSize)
			if start > 0 {
				return start, nil // the frames before it, then the error
			}
			return 0, c.err
		}
		// A bad header (CRC, length) is goridge's to report.
		c.skip = max(0, int(f.ReadHL(h))*gf.WORD-frame.HeaderSize) + int(size)
	}
	return n, err
}
