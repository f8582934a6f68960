package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"

	"github.com/pipevisor/pipevisor/frame"
)

// MaxRequestSize is the largest payload an RPC request frame may announce
// (64 MiB: a PushBatch of thousands of jobs fits many times over).
const MaxRequestSize = 64 << 20

// DefaultFrameTimeout is how long the rest of a request frame may take to
// arrive once its first byte has, and how long writing a reply may take
// (see WithFrameTimeout). The supervisor sets it to jobs.timeout: a frame that
// cannot cross the connection in that time would miss its call's deadline
// anyway.
const DefaultFrameTimeout = time.Minute

// DefaultMaxCallsInProgress is how many calls one connection may have in
// progress at once, from reading a request's header to writing its reply
// (see WithMaxCallsInProgress). While that many are in progress the
// server reads no further requests from the connection.
const DefaultMaxCallsInProgress = 128

// ErrRequestTooLarge ends a connection whose request frame announces a
// payload over MaxRequestSize.
var ErrRequestTooLarge = errors.New("rpc: request frame too large")

// ErrFrameTimeout ends a connection that began a request frame and did not
// finish it within the frame timeout.
var ErrFrameTimeout = errors.New("rpc: request frame incomplete")

// ErrReplyTimeout ends a connection on which writing a reply did not
// finish within the frame timeout: the client is not reading its replies.
var ErrReplyTimeout = errors.New("rpc: reply not written")

// ErrBadHeader ends a connection whose request frame header fails its CRC.
var ErrBadHeader = errors.New("rpc: request frame header CRC mismatch")

// ErrDuplicateSeq ends a connection that sends a request with the sequence
// number of a call still in progress on it: the two replies would carry
// the same seq, and goridge keeps one reply codec per seq, so one reply
// would be lost while its call had run.
var ErrDuplicateSeq = errors.New("rpc: request reuses the seq of a call in progress")

// maxHeaderSize is the longest frame header: the length nibble counts at
// most 15 words.
const maxHeaderSize = 15 * gf.WORD

// requestHeaderSize is the header of a request frame: the base header and
// the two options [seq, len(method)].
const requestHeaderSize = frame.HeaderSize + 2*gf.WORD

// limitConn passes a connection's bytes through to goridge's codec and
// checks every frame header on its way, before goridge sees its last byte;
// a check that fails fails the read (after the bytes of the frames before
// it) and the connection ends:
//
//   - The header CRC must match. goridge answers a mismatch by reading
//     whatever follows into memory for 2 s (and a header reading "Could
//     not op" with no time limit at all).
//   - The payload may announce at most MaxRequestSize. goridge allocates a
//     frame's whole announced payload as soon as it has read the header,
//     so a 20-byte header announcing 4 GiB would make the server allocate
//     4 GiB (and, where that fails, abort the process).
//   - Once the first byte of a frame has arrived, the rest must arrive
//     within timeout (if timeout > 0), or the read fails with
//     ErrFrameTimeout. Between frames a read waits without limit, so an
//     idle connection stays open.
//   - The seq of a request must not be that of a call in progress (if seqs
//     is set; see seqSet).
//
// Each Write (goridge writes a reply frame in one) must finish within
// timeout too (if timeout > 0); one that does not closes the connection
// and fails with ErrReplyTimeout, and so does every Write after it. A
// client that sends requests and never reads the replies fills its
// receive buffer, and without the bound the reply write would block
// forever, and with it every other call on the connection.
//
// Reads and the header state belong to the one goroutine that reads the
// connection; Write, werr, startReply and endReply to the goroutine
// writing a reply (net/rpc and guardedCodec write one reply at a time).
type limitConn struct {
	net.Conn
	timeout time.Duration // 0: no frame timeout
	seqs    *seqSet       // nil: no seq check

	hdr       [maxHeaderSize]byte
	have      int       // header bytes seen of the current frame
	hlen      int       // header length of the current frame, once its base header is in
	skip      int       // payload bytes left of the current frame
	err       error     // returned by the next Read: the bytes before it went out
	deadline  time.Time // read deadline set for the current frame; zero: none set
	replySeq  uint32    // seq of the reply being written
	replyOpen bool      // replySeq is still in seqs
	werr      error     // why writes fail: a reply write timed out and the connection is closed
}

// newLimitConn wraps conn with a frame timeout and a seq check.
func newLimitConn(conn net.Conn, timeout time.Duration) *limitConn {
	return &limitConn{Conn: conn, timeout: timeout, seqs: &seqSet{open: make(map[uint32]struct{})}}
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if err != nil && !c.deadline.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) {
		c.err = fmt.Errorf("%w within %v of its first byte", ErrFrameTimeout, c.timeout)
		err = c.err
	}
	began := false // a frame began in this read (the last to begin is the one left incomplete, if any)
	for i := 0; i < n; {
		if c.skip > 0 {
			k := min(c.skip, n-i)
			c.skip -= k
			i += k
			continue
		}
		if c.have == 0 {
			began = true
			c.hlen = frame.HeaderSize
		}
		start := i - c.have // where the header began, if in this read
		k := copy(c.hdr[c.have:c.hlen], p[i:n])
		c.have += k
		i += k
		if c.have < c.hlen {
			continue
		}
		if c.have == frame.HeaderSize {
			c.err = c.checkBase()
			if c.err == nil {
				c.hlen = max(frame.HeaderSize, int(c.hdr[0]&0x0F)*gf.WORD)
			}
		}
		if c.err == nil && c.have < c.hlen {
			continue // the options
		}
		if c.err == nil {
			c.err = c.checkSeq()
		}
		if c.err != nil {
			if start > 0 {
				return start, nil // the frames before it, then the error
			}
			return 0, c.err
		}
		c.have = 0
		c.skip = int(gf.From(c.hdr[:], nil).ReadPayloadLen(c.hdr[:]))
	}
	c.setDeadline(began)
	return n, err
}

// checkBase checks the base header of the current frame: CRC and size.
func (c *limitConn) checkBase() error {
	h := c.hdr[:frame.HeaderSize]
	f := gf.From(h, nil)
	if !f.VerifyCRC(h) {
		return fmt.Errorf("%w: % x", ErrBadHeader, h)
	}
	if size := int64(f.ReadPayloadLen(h)); size > MaxRequestSize {
		return fmt.Errorf("%w: it announces %d bytes, the limit is %d", ErrRequestTooLarge, size, MaxRequestSize)
	}
	return nil
}

// checkSeq registers the seq of the current frame as in progress. A header
// without exactly two options is goridge's to reject.
func (c *limitConn) checkSeq() error {
	if c.seqs == nil || c.hlen != requestHeaderSize {
		return nil
	}
	seq := binary.LittleEndian.Uint32(c.hdr[frame.HeaderSize:])
	if !c.seqs.begin(seq) {
		return fmt.Errorf("%w: seq %d", ErrDuplicateSeq, seq)
	}
	return nil
}

// setDeadline bounds the rest of an incomplete frame by timeout from its
// first byte (began: that byte came in this read), and lifts the bound
// between frames.
func (c *limitConn) setDeadline(began bool) {
	if c.timeout <= 0 || c.err != nil {
		return
	}
	mid := c.have > 0 || c.skip > 0
	switch {
	case mid && (began || c.deadline.IsZero()):
		c.deadline = time.Now().Add(c.timeout)
	case !mid && !c.deadline.IsZero():
		c.deadline = time.Time{}
	default:
		return
	}
	if err := c.Conn.SetReadDeadline(c.deadline); err != nil {
		c.err = fmt.Errorf("rpc: set read deadline: %w", err)
	}
}

// startReply marks the reply about to be written as the one for seq: its
// seq leaves the in-progress set when the reply's bytes are written (by
// then goridge has taken its codec for seq), so a client that reuses a seq
// once it has the reply is never refused.
func (c *limitConn) startReply(seq uint32) {
	c.replySeq, c.replyOpen = seq, c.seqs != nil
}

// endReply takes the reply's seq out of the in-progress set if writing it
// did not (the codec failed before writing).
func (c *limitConn) endReply() {
	if c.replyOpen {
		c.replyOpen = false
		c.seqs.end(c.replySeq)
	}
}

func (c *limitConn) Write(p []byte) (int, error) {
	c.endReply()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.timeout > 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, fmt.Errorf("rpc: set write deadline: %w", err)
		}
	}
	n, err := c.Conn.Write(p)
	if err != nil && c.timeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		c.werr = fmt.Errorf("%w within %v: %d of %d bytes went out", ErrReplyTimeout, c.timeout, n, len(p))
		_ = c.Conn.Close() // the reader's Read fails and the connection ends
		return n, c.werr
	}
	return n, err
}

// seqSet holds the seqs of the calls in progress on one connection, from
// the request header's arrival until the reply is written.
type seqSet struct {
	mu   sync.Mutex
	open map[uint32]struct{}
}

// begin adds seq; it returns false if seq is already in progress.
func (s *seqSet) begin(seq uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.open[seq]; ok {
		return false
	}
	s.open[seq] = struct{}{}
	return true
}

// end removes seq.
func (s *seqSet) end(seq uint32) {
	s.mu.Lock()
	delete(s.open, seq)
	s.mu.Unlock()
}
