package frame

import (
	"encoding/binary"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// Flag bits of byte 1 of a frame header, re-exported from goridge's
// pkg/frame so callers need one import.
const (
	FlagControl   = gf.CONTROL   // control frame: payload is JSON ({"pid":N} or {"stop":true})
	FlagCodecRaw  = gf.CodecRaw  // raw bytes; what job frames carry
	FlagCodecJSON = gf.CodecJSON // JSON; what control frames from the supervisor carry
	FlagError     = gf.ERROR     // error frame: payload is the error text
)

// Bits of byte 10 (the stream byte), re-exported from goridge's pkg/frame.
const (
	StreamBit = gf.STREAM
	StopBit   = gf.STOP
	PingBit   = gf.PING
	PongBit   = gf.PONG
)

// HeaderSize is the size of a frame header without options.
const HeaderSize = 12

// MaxOptions is the largest number of 32-bit options a header can carry.
const MaxOptions = gf.OptionsMaxSize / gf.WORD

// Frame is one decoded goridge v3 frame.
type Frame struct {
	// Flags is byte 1 of the header (FlagControl, FlagError, codecs).
	Flags byte
	// Stream is byte 10 of the header (StreamBit, StopBit, PingBit, PongBit).
	Stream byte
	// Options are the header options. When the frame comes from a Reader
	// the slice aliases the Reader's memory and is only valid until the
	// next ReadFrame.
	Options []uint32
	// Payload is the frame payload. A Reader allocates it per frame; the
	// caller owns it.
	Payload []byte
}

// AppendFrame appends one complete frame (header, options, payload) to dst
// and returns the extended slice. The payload is the concatenation of parts.
// It panics if len(opts) > MaxOptions, like goridge's WriteOptions.
//
// The header is written through goridge's pkg/frame accessors (version,
// flags, payload length, CRC); only the header length nibble and the option
// words are stored directly, because goridge's WriteOptions reallocates the
// header on every call. TestAppendFrameMatchesGoridge checks every byte
// against goridge's own encoder.
func AppendFrame(dst []byte, flags byte, opts []uint32, parts ...[]byte) []byte {
	if len(opts) > MaxOptions {
		panic("frame: more than 10 options")
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	start := len(dst)
	hl := HeaderSize + len(opts)*gf.WORD
	dst = grow(dst, hl+n)
	h := dst[start : start+hl]
	clear(h)
	f := gf.From(h, nil)
	f.WriteVersion(h, gf.Version1)
	h[0] |= byte(hl / gf.WORD) // header length in 32-bit words (low nibble)
	f.WriteFlags(h, flags)
	for i, o := range opts {
		binary.LittleEndian.PutUint32(h[HeaderSize+i*gf.WORD:], o)
	}
	f.WritePayloadLen(h, uint32(n))
	f.WriteCRC(h)
	off := start + hl
	for _, p := range parts {
		off += copy(dst[off:], p)
	}
	return dst
}

// grow extends b by n bytes, reusing its capacity when it can.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// EncodeExec returns the frame the supervisor sends to run a job: flags
// CodecRaw, option 0 = len(pl.Context), payload = Context ‖ Body.
func EncodeExec(pl Payload) []byte {
	return AppendFrame(nil, FlagCodecRaw, []uint32{uint32(len(pl.Context))}, pl.Context, pl.Body)
}

// EncodeReply returns the frame a worker sends back for a job: flags 0,
// option 0 = len(pl.Context), payload = Context ‖ Body (what the PHP
// worker's respond() writes).
func EncodeReply(pl Payload) []byte {
	return AppendFrame(nil, 0, []uint32{uint32(len(pl.Context))}, pl.Context, pl.Body)
}

// EncodeError returns an ERROR frame carrying msg, as a worker sends when a
// job fails with an exception.
func EncodeError(msg []byte) []byte {
	return AppendFrame(nil, FlagError, nil, msg)
}

// EncodeControl returns a control frame with the given JSON payload. The
// supervisor sends flags FlagControl|FlagCodecJSON; PHP workers answer with
// FlagControl only.
func EncodeControl(flags byte, payload []byte) []byte {
	return AppendFrame(nil, flags|FlagControl, nil, payload)
}
