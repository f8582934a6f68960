// Package frame speaks goridge v3, the wire protocol between the
// supervisor and its PHP/Python workers, on top of goridge's own
// github.com/roadrunner-server/goridge/v3/pkg/frame (v3.8.3).
//
// # Byte layout (all integers little-endian)
//
//	byte 0      version (high nibble, always 1) | header length HL in 32-bit words (low nibble, 3..13)
//	byte 1      flags: CONTROL 0x01, CODEC_RAW 0x04, CODEC_JSON 0x08, ERROR 0x40 (others: codecs)
//	bytes 2-5   payload length (uint32), options not included
//	bytes 6-9   CRC-32 (IEEE) of bytes 0-5 only
//	byte 10     stream byte: STREAM 0x01, STOP 0x02, PING 0x04, PONG 0x08
//	byte 11     reserved, 0
//	12..4*HL-1  HL-3 options, uint32 each (at most 10)
//	then        payload, payload-length bytes
//
// # Frames between supervisor and worker
//
//   - Handshake: the supervisor sends a control frame (flags CONTROL|CODEC_JSON,
//     no options) with payload {"pid":<supervisor pid>}; the worker answers
//     with a CONTROL frame whose payload is {"pid":<worker pid>}.
//   - Stop: control frame CONTROL|CODEC_JSON with payload {"stop":true}; the
//     worker leaves its loop and exits.
//   - Job: flags CODEC_RAW, exactly one option = len(context), payload =
//     context JSON ‖ body (JobContext is the context).
//   - Reply: flags 0 (PHP) or any codec, exactly one option = len(context),
//     payload = context ‖ body; the body is the Reply JSON and the context is
//     normally empty. Context {"stop":true} with an empty body asks the
//     supervisor to retire the worker and run the job elsewhere.
//   - Error: flags ERROR, no options, payload = error text. The job failed;
//     the worker stays usable.
//
// testdata/ holds one golden .bin file per frame kind, and vectors.json
// describes each (direction, flags, options, context, body). The PHP and
// Python clients test against the same files; TestGoldenVectors checks
// them against this package's encoder (go test ./frame -update rewrites
// them) and TestAgainstGoridge checks the encoder and the Reader against
// goridge's own encoder and pipe relay.
//
// # Reading
//
// Reader reads frames from a worker's stdout with errors that say what
// went wrong: ErrBadCommand (PHP printed "Could not open input file"),
// ErrNotFrame (bad CRC; the error quotes what the worker printed, read for
// at most DumpTimeout), ErrBadHeader, ErrTruncated (the stream ended before
// the payload length in the header). SplitReply adds ErrBadOptions,
// ErrBadOffset and ErrStream for job replies. A Reader never allocates
// more than 1 MiB ahead of the bytes actually received, whatever length a
// header claims.
package frame
