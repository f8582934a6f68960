"""Frame codec: byte layout, CRC verification, options, truncated streams."""

from __future__ import annotations

import binascii
import io
import struct

import pytest

from pipevisor import FrameError
from pipevisor import frame as fr


def test_encode_layout_without_options() -> None:
    data = fr.encode(fr.CONTROL | fr.CODEC_JSON, b'{"pid":123}')
    assert data[0] == 0x13  # version 1, header length 3 words
    assert data[1] == 0x09
    assert struct.unpack_from("<I", data, 2)[0] == 11
    assert struct.unpack_from("<I", data, 6)[0] == binascii.crc32(data[:6])
    assert data[10:12] == b"\x00\x00"
    assert data[12:] == b'{"pid":123}'


def test_encode_layout_with_options() -> None:
    data = fr.encode(fr.CODEC_JSON, b"jobs.Pushxyz", (7, 9))
    assert data[0] == 0x15  # header length 5 words: two options
    assert struct.unpack_from("<I", data, 2)[0] == 12  # options are not counted
    assert struct.unpack_from("<II", data, 12) == (7, 9)
    assert data[20:] == b"jobs.Pushxyz"
    assert struct.unpack_from("<I", data, 6)[0] == binascii.crc32(data[:6])


@pytest.mark.parametrize("options", [(), (0,), (1, 2), tuple(range(10))])
def test_round_trip(options: tuple) -> None:
    data = fr.encode(fr.CODEC_RAW, b"x" * 1000, options, fr.STREAM)
    f = fr.decode(data)
    assert (f.flags, f.options, f.payload, f.stream) == (fr.CODEC_RAW, options, b"x" * 1000, fr.STREAM)
    g = fr.read_frame(io.BytesIO(data).read)
    assert g == f
    assert f.to_bytes() == data


def test_too_many_options() -> None:
    with pytest.raises(ValueError):
        fr.encode(0, b"", tuple(range(11)))
    with pytest.raises(ValueError):
        fr.encode(0, b"", (2**32,))


def test_crc_mismatch_names_the_bytes() -> None:
    data = bytearray(fr.encode(0, b"hello", (0,)))
    data[2] ^= 0x01
    with pytest.raises(FrameError, match="CRC"):
        fr.read_frame(io.BytesIO(bytes(data)).read)
    with pytest.raises(FrameError, match="Could not op"):
        fr.read_frame(io.BytesIO(b"Could not open input file").read)


def test_bad_version_and_header_length() -> None:
    for b0 in (0x23, 0x12, 0x1E):
        head = bytes([b0, 0]) + struct.pack("<I", 0)
        data = head + struct.pack("<I", binascii.crc32(head)) + b"\x00\x00"
        with pytest.raises(FrameError):
            fr.read_frame(io.BytesIO(data).read)


def test_clean_eof_and_truncation() -> None:
    assert fr.read_frame(io.BytesIO(b"").read) is None
    data = fr.encode(0, b"hello", (0,))
    for cut in (5, 12, 15, len(data) - 1):
        with pytest.raises(FrameError, match="ended"):
            fr.read_frame(io.BytesIO(data[:cut]).read)


def test_short_reads_are_reassembled() -> None:
    data = fr.encode(fr.CODEC_RAW, b"abcdef" * 100, (6,))

    class Trickle:
        def __init__(self, b: bytes) -> None:
            self.b = b

        def read(self, n: int) -> bytes:
            chunk, self.b = self.b[: min(n, 7)], self.b[min(n, 7) :]
            return chunk

    f = fr.read_frame(Trickle(data).read)
    assert f is not None and f.payload == b"abcdef" * 100 and f.options == (6,)


def test_two_reads_per_frame() -> None:
    data = fr.encode(fr.CODEC_RAW, b"body", (2,)) + fr.encode(0, b"")
    calls = []
    stream = io.BytesIO(data)

    def read(n: int) -> bytes:
        calls.append(n)
        return stream.read(n)

    assert fr.read_frame(read) is not None
    assert calls == [12, 8]
    assert fr.read_frame(read) == fr.Frame(0, (), b"", 0)
    assert calls == [12, 8, 12]


def test_decode_rejects_wrong_length() -> None:
    data = fr.encode(0, b"abc")
    with pytest.raises(FrameError):
        fr.decode(data + b"x")
    with pytest.raises(FrameError):
        fr.decode(data[:-1])
