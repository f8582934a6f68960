package frame

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// couldNotOpen is the first 12 bytes of PHP's "Could not open input file"
// message, printed on stdout when the worker script does not exist.
var couldNotOpen = []byte("Could not op")

const (
	// DefaultDumpTimeout bounds how long a Reader keeps reading, after a
	// bad frame, to show what the worker printed.
	DefaultDumpTimeout = 200 * time.Millisecond
	// maxDump caps how much of the worker's output an error quotes.
	maxDump = 4096
	// exactAlloc: payloads up to this size are allocated at once; larger
	// ones grow as bytes arrive, so a lying header cannot make the reader
	// allocate gigabytes for bytes that never come.
	exactAlloc = 1 << 20
	// bufSize is the read buffer of a Reader.
	bufSize = 32 << 10
)

// deadliner is implemented by *os.File (pipes) and net.Conn.
type deadliner interface {
	SetReadDeadline(t time.Time) error
}

// Reader reads goridge v3 frames from a worker's stdout. It is not safe
// for concurrent use. After any error other than io.EOF the stream is out
// of sync and the Reader must be discarded (the pool kills the worker).
type Reader struct {
	br   *bufio.Reader
	dl   deadliner // nil if the underlying reader has no deadlines
	hdr  [HeaderSize + gf.OptionsMaxSize]byte
	opts [MaxOptions]uint32
	// DumpTimeout bounds the extra read, after a bad CRC or PHP's "Could
	// not open input file", that collects what the worker printed. Only
	// used when the underlying reader supports SetReadDeadline (pipes from
	// os.Pipe and exec.Cmd do); otherwise only already-buffered bytes are
	// shown.
	DumpTimeout time.Duration
}

// NewReader returns a Reader on r. When r has a SetReadDeadline method
// (an *os.File pipe, a net.Conn) the Reader uses it to bound the dump of
// a bad stream; deadlines the caller sets on r stay in force for reads.
func NewReader(r io.Reader) *Reader {
	rd := &Reader{br: bufio.NewReaderSize(r, bufSize), DumpTimeout: DefaultDumpTimeout}
	if d, ok := r.(deadliner); ok {
		rd.dl = d
	}
	return rd
}

// Buffered returns how many bytes were read from the stream beyond the
// frames returned so far.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadFrame reads one frame. A stream that ends cleanly before the first
// header byte returns an error wrapping io.EOF. Every other failure wraps
// one of ErrBadCommand, ErrNotFrame, ErrBadHeader or ErrTruncated, or is
// the underlying read error (for instance os.ErrDeadlineExceeded).
func (r *Reader) ReadFrame() (Frame, error) {
	h := r.hdr[:HeaderSize]
	if n, err := io.ReadFull(r.br, h); err != nil {
		switch {
		case n == 0 && errors.Is(err, io.EOF):
			return Frame{}, fmt.Errorf("frame: worker closed its stdout: %w", io.EOF)
		case errors.Is(err, io.ErrUnexpectedEOF):
			if bytes.Equal(h[:n], couldNotOpen[:min(n, len(couldNotOpen))]) && n > 0 {
				return Frame{}, fmt.Errorf("%w: the worker printed %q", ErrBadCommand, h[:n])
			}
			return Frame{}, fmt.Errorf("%w: it wrote %q, then closed stdout", ErrNotFrame, h[:n])
		default:
			return Frame{}, err
		}
	}
	if bytes.Equal(h, couldNotOpen) {
		return Frame{}, fmt.Errorf("%w: the worker printed %q", ErrBadCommand, r.dump(h))
	}
	f := gf.From(h, nil)
	if !f.VerifyCRC(h) {
		return Frame{}, fmt.Errorf("%w (workers must log to stderr); stdout had %q", ErrNotFrame, r.dump(h))
	}
	if v := f.ReadVersion(h); v != gf.Version1 {
		return Frame{}, fmt.Errorf("%w: version %d, want 1", ErrBadHeader, v)
	}
	hl := int(f.ReadHL(h))
	if hl < 3 || hl > 3+MaxOptions {
		return Frame{}, fmt.Errorf("%w: header length %d words, want 3..13", ErrBadHeader, hl)
	}
	out := Frame{Flags: h[1], Stream: h[10]}
	if hl > 3 {
		full := r.hdr[:hl*gf.WORD]
		if n, err := io.ReadFull(r.br, full[HeaderSize:]); err != nil {
			return Frame{}, truncated(err, "options", hl*gf.WORD-HeaderSize, n)
		}
		nopt := hl - 3
		for i := range nopt {
			r.opts[i] = binary.LittleEndian.Uint32(full[HeaderSize+i*gf.WORD:])
		}
		out.Options = r.opts[:nopt:nopt]
	}
	size := int(f.ReadPayloadLen(h))
	if size == 0 {
		return out, nil
	}
	p, err := r.readPayload(size)
	if err != nil {
		return Frame{}, err
	}
	out.Payload = p
	return out, nil
}

// readPayload reads exactly size bytes into a new slice. Up to exactAlloc
// the slice is allocated at once; past that it grows with the data.
func (r *Reader) readPayload(size int) ([]byte, error) {
	if size <= exactAlloc {
		p := make([]byte, size)
		if n, err := io.ReadFull(r.br, p); err != nil {
			return nil, truncated(err, "payload", size, n)
		}
		return p, nil
	}
	p := make([]byte, 0, exactAlloc)
	for len(p) < size {
		if len(p) == cap(p) {
			p = append(p, 0)[:len(p)]
		}
		want := min(cap(p), size)
		n, err := io.ReadFull(r.br, p[len(p):want])
		p = p[:len(p)+n]
		if err != nil {
			return nil, truncated(err, "payload", size, len(p))
		}
	}
	return p, nil
}

func truncated(err error, part string, want, got int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: header announced %d %s bytes, stdout ended after %d", ErrTruncated, want, part, got)
	}
	return fmt.Errorf("frame: reading %s (%d of %d bytes): %w", part, got, want, err)
}

// dump returns prefix followed by what the worker printed after it: what
// is already buffered, plus, when the stream has deadlines, whatever
// arrives within DumpTimeout, up to maxDump bytes in all. It leaves the
// read deadline in the past or at DumpTimeout: the stream is unusable
// afterwards anyway.
func (r *Reader) dump(prefix []byte) []byte {
	out := append([]byte(nil), prefix...)
	if r.dl == nil || r.DumpTimeout <= 0 {
		n := min(r.br.Buffered(), maxDump-len(out))
		b, _ := r.br.Peek(n)
		return append(out, b...)
	}
	_ = r.dl.SetReadDeadline(time.Now().Add(r.DumpTimeout))
	rest, _ := io.ReadAll(io.LimitReader(r.br, int64(maxDump-len(out))))
	return append(out, rest...)
}

// SplitReply checks the frame a worker sent back for a job and splits its
// payload into context and body. The frame must not be an ERROR frame
// (check Flags first), must not be streamed, must carry exactly one option,
// and option 0 must not exceed the payload. The returned slices alias
// f.Payload.
func SplitReply(f Frame) (Payload, error) {
	if f.Stream&StreamBit != 0 {
		return Payload{}, ErrStream
	}
	if len(f.Options) != 1 {
		return Payload{}, fmt.Errorf("%w: got %d options (flags %#02x, payload starts %q)",
			ErrBadOptions, len(f.Options), f.Flags, head(f.Payload, 64))
	}
	off := f.Options[0]
	if uint64(off) > uint64(len(f.Payload)) {
		return Payload{}, fmt.Errorf("%w: option 0 is %d, payload is %d bytes", ErrBadOffset, off, len(f.Payload))
	}
	return Payload{Context: f.Payload[:off:off], Body: f.Payload[off:]}, nil
}
