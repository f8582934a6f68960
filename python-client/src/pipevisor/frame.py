"""goridge v3 frame codec.

A frame is a 12-byte header, up to ten 32-bit options and a payload, all
little-endian::

    byte 0      version (high nibble, always 1) | header length in words (low nibble)
    byte 1      flags (CONTROL, ERROR, codec bits)
    bytes 2..5  payload length (uint32), options not included
    bytes 6..9  CRC-32 (IEEE, zlib.crc32) over bytes 0..5 only
    byte 10     stream bits (STREAM, STOP, PING, PONG)
    byte 11     reserved, 0
    then        options (uint32 each), then the payload

:func:`encode` builds a frame; :func:`read_frame` reads one from a binary
stream and verifies the CRC. It asks for the 12-byte header, then for the
options and payload together, more only when a read comes back short, and
never for a byte past the frame: given an unbuffered stream (as the
:class:`~pipevisor.Consumer` reads stdin) it leaves the frames behind the
one it returns unread. :func:`decode` parses a complete frame held in
memory.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

from .errors import FrameError

__all__ = [
    "VERSION",
    "HEADER_SIZE",
    "MAX_OPTIONS",
    "CONTROL",
    "CODEC_RAW",
    "CODEC_JSON",
    "CODEC_MSGPACK",
    "CODEC_GOB",
    "ERROR",
    "CODEC_PROTO",
    "STREAM",
    "STOP",
    "PING",
    "PONG",
    "Frame",
    "encode",
    "decode",
    "read_frame",
]

VERSION = 1
"""The only frame version goridge v3 writes."""
HEADER_SIZE = 12
"""Size of the fixed header in bytes."""
MAX_OPTIONS = 10
"""At most ten options fit in the header (header length 13 words)."""

# Flags (byte 1).
CONTROL = 0x01
CODEC_RAW = 0x04
CODEC_JSON = 0x08
CODEC_MSGPACK = 0x10
CODEC_GOB = 0x20
ERROR = 0x40
CODEC_PROTO = 0x80

# Stream bits (byte 10).
STREAM = 0x01
STOP = 0x02
PING = 0x04
PONG = 0x08

_PREFIX = struct.Struct("<BBI")  # version|hl, flags, payload length
_SUFFIX = struct.Struct("<IBB")  # crc, stream byte, reserved
_HEADER = struct.Struct("<BBIIBB")


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    ``flags`` is byte 1, ``options`` the option words in order, ``payload``
    the payload bytes and ``stream`` byte 10 of the header.
    """

    flags: int
    options: Tuple[int, ...]
    payload: bytes
    stream: int = 0

    def has(self, flag: int) -> bool:
        """Report whether every bit of ``flag`` is set in :attr:`flags`."""
        return self.flags & flag == flag

    def to_bytes(self) -> bytes:
        """Encode the frame again (see :func:`encode`)."""
        return encode(self.flags, self.payload, self.options, self.stream)


def encode(flags: int, payload: bytes, options: Sequence[int] = (), stream: int = 0) -> bytes:
    """Return the bytes of one version-1 frame.

    ``options`` are at most :data:`MAX_OPTIONS` unsigned 32-bit words. The
    CRC covers bytes 0..5, so it is computed after the header length (which
    depends on the option count) and the payload length are known.

    Raises :class:`ValueError` for too many options, an option outside
    0..2**32-1, a flag or stream byte outside 0..255, or a payload of 4 GiB
    or more.
    """
    n = len(options)
    if n > MAX_OPTIONS:
        raise ValueError(f"frame: {n} options, at most {MAX_OPTIONS} fit")
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("frame: payload of 4 GiB or more")
    try:
        prefix = _PREFIX.pack((VERSION << 4) | (3 + n), flags, len(payload))
        suffix = _SUFFIX.pack(zlib.crc32(prefix), stream, 0)
        opts = struct.pack(f"<{n}I", *options) if n else b""
    except struct.error as exc:
        raise ValueError(f"frame: {exc}") from exc
    return b"".join((prefix, suffix, opts, payload))


def _parse_header(header: bytes) -> Tuple[int, int, int]:
    """Validate a 12-byte header; return (option count, payload length, flags)."""
    b0, flags, plen, crc, _stream, _ = _HEADER.unpack(header)
    if zlib.crc32(header[:6]) != crc:
        raise FrameError(
            f"frame: header CRC mismatch; the stream does not carry goridge frames "
            f"(first bytes {header!r})"
        )
    version, hl = b0 >> 4, b0 & 0x0F
    if version != VERSION:
        raise FrameError(f"frame: unsupported version {version}")
    if hl < 3 or hl > 3 + MAX_OPTIONS:
        raise FrameError(f"frame: header length {hl} words is outside 3..13")
    return hl - 3, plen, flags


def decode(data: bytes) -> Frame:
    """Decode one complete frame held in ``data``.

    Raises :class:`~pipevisor.errors.FrameError` if the header is invalid or
    ``data`` is not exactly one frame long.
    """
    if len(data) < HEADER_SIZE:
        raise FrameError(f"frame: {len(data)} bytes, shorter than a header")
    nopt, plen, flags = _parse_header(bytes(data[:HEADER_SIZE]))
    want = HEADER_SIZE + 4 * nopt + plen
    if len(data) != want:
        raise FrameError(f"frame: {len(data)} bytes, the header announces {want}")
    options = struct.unpack_from(f"<{nopt}I", data, HEADER_SIZE)
    return Frame(flags, options, bytes(data[HEADER_SIZE + 4 * nopt :]), data[10])


def _read_exact(read: Callable[[int], bytes], n: int, first: bytes = b"") -> bytes:
    """Read until ``n`` bytes are gathered (``first`` counts toward them)."""
    chunks = [first] if first else []
    got = len(first)
    while got < n:
        chunk = read(n - got)
        if not chunk:
            raise FrameError(f"frame: stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_frame(read: Callable[[int], bytes]) -> Optional[Frame]:
    """Read one frame with ``read`` (for example ``sys.stdin.buffer.raw.read``).

    Returns ``None`` when the stream ends cleanly before the first header
    byte. ``read(n)`` must block and return 1 to ``n`` bytes, or ``b""`` at
    end of stream. It is called with the header size, then with the size of
    the options and payload, and again for the bytes still missing after a
    short read; never for more than the frame holds, so an unbuffered
    ``read`` (a raw file or a socket's ``recv``) consumes nothing past the
    frame returned. A buffered stream's ``read`` may read ahead of that.

    Raises :class:`~pipevisor.errors.FrameError` on a CRC mismatch, a bad
    version or header length, or a stream that ends inside a frame.
    """
    header = read(HEADER_SIZE)
    if not header:
        return None
    if len(header) < HEADER_SIZE:
        header = _read_exact(read, HEADER_SIZE, header)
    nopt, plen, flags = _parse_header(header)
    rest_len = 4 * nopt + plen
    if rest_len == 0:
        return Frame(flags, (), b"", header[10])
    rest = read(rest_len)
    if len(rest) < rest_len:
        rest = _read_exact(read, rest_len, rest)
    if nopt == 0:
        return Frame(flags, (), rest, header[10])
    options = struct.unpack_from(f"<{nopt}I", rest, 0)
    return Frame(flags, options, rest[4 * nopt :], header[10])
