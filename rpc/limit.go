package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
// payload over the frame limit (MaxRequestSize, or the in-flight byte
// budget when smaller): the client gets an error reply naming the limit
// (a *FrameLimitError) once the server has read past the frame, then the
// connection closes.
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
//   - The payload may announce at most maxFrame. goridge allocates a
//     frame's whole announced payload as soon as it has read the header,
//     so a 20-byte header announcing 4 GiB would make the server allocate
//     4 GiB (and, where that fails, abort the process). A frame over the
//     limit is refused (see refusal).
//   - The payload size is reserved in the server's in-flight budget (if
//     set) before the header's last byte goes to goridge: the read waits
//     for room, up to timeout, then refuses the frame with ErrServerBusy.
//     A request's reservation is given back when its reply is written
//     (endReply), the rest when the connection ends (releaseAll).
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
	timeout  time.Duration   // 0: no frame timeout
	seqs     *seqSet         // nil: no seq check
	budget   *budget         // nil: no in-flight budget
	maxFrame int64           // largest payload a frame may announce
	ctx      context.Context // ends a wait for the budget (server shutdown)
	unseqd   int64           // reserved by frames without a seq, until the connection ends

	// refused is the frame refused with an error reply (too large, or no
	// room in the budget): the reader replies, discards its payload and
	// ends the connection. nil: none.
	refused *refusal

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

// refusal is a request frame that gets an error reply instead of being
// read: err is the reply's text, remaining the payload bytes still to
// discard from the connection.
type refusal struct {
	seq       uint32
	err       error
	remaining int64
}

// newLimitConn wraps conn with a frame timeout, a seq check and the frame
// limit MaxRequestSize; see withBudget for the in-flight budget.
func newLimitConn(conn net.Conn, timeout time.Duration) *limitConn {
	return &limitConn{Conn: conn, timeout: timeout, seqs: &seqSet{open: make(map[uint32]int64)}, maxFrame: MaxRequestSize, ctx: context.Background()}
}

// withBudget makes the frames of c reserve their size in b, waiting while
// ctx lasts; the frame limit becomes the smaller of MaxRequestSize and
// the whole budget.
func (c *limitConn) withBudget(ctx context.Context, b *budget) *limitConn {
	c.ctx, c.budget, c.maxFrame = ctx, b, min(MaxRequestSize, b.limit)
	return c
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
		size := int64(gf.From(c.hdr[:], nil).ReadPayloadLen(c.hdr[:]))
		if c.err == nil {
			c.err = c.checkSize(size, int64(n-i))
		}
		if c.err == nil {
			c.err = c.checkSeq()
		}
		if c.err == nil {
			var waited bool
			waited, c.err = c.reserve(size, int64(n-i))
			began = began || waited // the rest of the frame gets its full timeout from now
		}
		if c.err != nil {
			if start > 0 {
				return start, nil // the frames before it, then the error
			}
			return 0, c.err
		}
		c.have = 0
		c.skip = int(size)
	}
	c.setDeadline(began)
	return n, err
}

// checkBase checks the CRC of the current frame's base header.
func (c *limitConn) checkBase() error {
	h := c.hdr[:frame.HeaderSize]
	if !gf.From(h, nil).VerifyCRC(h) {
		return fmt.Errorf("%w: % x", ErrBadHeader, h)
	}
	return nil
}

// hasSeq reports whether the current frame is a request with a seq (its
// header has exactly two options); goridge rejects the others.
func (c *limitConn) hasSeq() bool {
	return c.seqs != nil && c.hlen == requestHeaderSize
}

// seq is the seq of the current frame; hasSeq must hold.
func (c *limitConn) seq() uint32 {
	return binary.LittleEndian.Uint32(c.hdr[frame.HeaderSize:])
}

// checkSeq registers the seq of the current frame as in progress.
func (c *limitConn) checkSeq() error {
	if !c.hasSeq() {
		return nil
	}
	if !c.seqs.begin(c.seq()) {
		return fmt.Errorf("%w: seq %d", ErrDuplicateSeq, c.seq())
	}
	return nil
}

// checkSize refuses the current frame when its payload is over the
// frame limit; read is how many payload bytes are already in the read
// buffer. A refused frame with a seq gets an error reply (c.refused).
func (c *limitConn) checkSize(size, read int64) error {
	if size <= c.maxFrame {
		return nil
	}
	err := &FrameLimitError{Op: "rpc: request", Size: size, Limit: c.maxFrame}
	if c.hasSeq() {
		c.refused = &refusal{seq: c.seq(), err: err, remaining: size - min(size, read)}
	}
	return err
}

// reserve reserves the current frame's payload size in the budget,
// waiting for room up to the frame timeout; waited reports that it had
// to wait. A frame that found no room in time is refused: its seq leaves
// the in-progress set and it gets an error reply (c.refused).
func (c *limitConn) reserve(size, read int64) (waited bool, err error) {
	if c.budget == nil || size == 0 {
		return false, nil
	}
	if c.budget.tryAcquire(size) {
		c.hold(size)
		return false, nil
	}
	err = c.budget.acquire(c.ctx, size, c.timeout)
	switch {
	case err == nil:
		c.hold(size)
		return true, nil
	case !errors.Is(err, ErrServerBusy):
		return true, fmt.Errorf("rpc: waiting for room in the in-flight budget: %w", err)
	}
	if c.hasSeq() {
		c.seqs.end(c.seq())
		c.refused = &refusal{seq: c.seq(), err: err, remaining: size - min(size, read)}
	}
	return true, err
}

// hold records size as reserved by the current frame: until its reply is
// written when it has a seq, else until the connection ends.
func (c *limitConn) hold(size int64) {
	if c.hasSeq() {
		c.seqs.hold(c.seq(), size)
	} else {
		c.unseqd += size
	}
}

// discard reads and drops the rest of the refused frame's payload, within
// the frame timeout: a client writes its whole request before it reads
// the reply, and closing the connection under its write would reset the
// connection and lose the reply.
func (c *limitConn) discard() error {
	if c.refused == nil || c.refused.remaining == 0 {
		return nil
	}
	if c.timeout > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return err
		}
	}
	_, err := io.CopyN(io.Discard, c.Conn, c.refused.remaining)
	return err
}

// releaseAll gives back what the connection still holds in the budget; it
// runs once the connection is done (no reply is being written).
func (c *limitConn) releaseAll() {
	if c.budget == nil {
		return
	}
	c.budget.release(c.seqs.drain() + c.unseqd)
	c.unseqd = 0
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
// did not (the codec failed before writing), and gives its request's
// bytes back to the budget.
func (c *limitConn) endReply() {
	if c.replyOpen {
		c.replyOpen = false
		if n := c.seqs.end(c.replySeq); c.budget != nil {
			c.budget.release(n)
		}
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
// the request header's arrival until the reply is written, each with the
// bytes its request holds in the budget.
type seqSet struct {
	mu   sync.Mutex
	open map[uint32]int64
}

// begin adds seq, holding nothing; it returns false if seq is already in
// progress.
func (s *seqSet) begin(seq uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.open[seq]; ok {
		return false
	}
	s.open[seq] = 0
	return true
}

// hold records that seq holds n bytes of the budget.
func (s *seqSet) hold(seq uint32, n int64) {
	s.mu.Lock()
	s.open[seq] = n
	s.mu.Unlock()
}

// end removes seq and returns the bytes it held.
func (s *seqSet) end(seq uint32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.open[seq]
	delete(s.open, seq)
	return n
}

// drain removes every seq and returns the bytes they held.
func (s *seqSet) drain() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for seq, held := range s.open {
		n += held
		delete(s.open, seq)
	}
	return n
}
