"""goridge RPC client (the transport of the supervisor's ``jobs.*`` API).

Each call is one frame each way. The request carries flag ``CODEC_JSON``
(0x08), two options ``[seq, len(method)]`` and the payload
``method ‖ JSON body``. The response echoes the sequence number and method
length; its payload is ``method ‖ JSON result``, or ``method ‖ error text``
when the ``ERROR`` flag (0x40) is set.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from typing import Any, BinaryIO, Optional, Tuple

from . import frame as fr
from .errors import FrameError, ProtocolError, RPCError

__all__ = ["DEFAULT_ADDRESS", "RPC", "parse_address", "encode_request", "decode_response"]

DEFAULT_ADDRESS = "tcp://127.0.0.1:6001"
"""Used when neither an address nor the ``RR_RPC`` environment variable is given."""


def parse_address(address: str) -> Tuple[int, Any]:
    """Split ``tcp://host:port`` or ``unix://path`` into (socket family, address).

    An empty host (``tcp://:6001``, a listen address the supervisor passes
    on in ``RR_RPC`` unchanged) means 127.0.0.1. Raises :class:`ValueError`
    for anything else.
    """
    if address.startswith("tcp://"):
        host, sep, port = address[len("tcp://") :].rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"bad RPC address {address!r}: want tcp://host:port")
        host = host or "127.0.0.1"
        return socket.AF_INET6 if host.startswith("[") else socket.AF_INET, (host.strip("[]"), int(port))
    if address.startswith("unix://") and len(address) > len("unix://"):
        return socket.AF_UNIX, address[len("unix://") :]
    raise ValueError(f"bad RPC address {address!r}: want tcp://host:port or unix://path")


def encode_request(seq: int, method: str, params: Any) -> bytes:
    """Return the request frame for ``method`` with ``params`` encoded as JSON."""
    name = method.encode("utf-8")
    body = json.dumps(params, separators=(",", ":")).encode("utf-8")
    return fr.encode(fr.CODEC_JSON, name + body, (seq, len(name)))


_FRAME_LIMIT = re.compile(r" exceeds the RPC frame limit of .*\((\d+) > (\d+) bytes\)$")


def _mib(n: int) -> str:
    """``n`` bytes in MiB, as the supervisor writes them: "64 MiB", "64.1 MiB"."""
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    return f"{n / (1 << 20):.1f} MiB"


def server_message(method: str, text: str) -> str:
    """The text of an error reply as the client reports it.

    A request over the supervisor's RPC frame limit reads "push of 64.0 MiB
    exceeds the RPC frame limit of 64 MiB (67108912 > 67108864 bytes)" for
    ``jobs.Push`` and ``jobs.PushBatch`` ("request of ..." for other
    methods); any other text is returned unchanged.
    """
    m = _FRAME_LIMIT.search(text)
    if m is None:
        return text
    size, limit = int(m.group(1)), int(m.group(2))
    what = "push" if method in ("jobs.Push", "jobs.PushBatch") else "request"
    return f"{what} of {_mib(size)} exceeds the RPC frame limit of {_mib(limit)} ({size} > {limit} bytes)"


def decode_response(f: fr.Frame, seq: int, method: str) -> Any:
    """Check a response frame against the call and return its decoded JSON result.

    An empty result decodes to ``None``. Raises
    :class:`~pipevisor.errors.RPCError` when the server reports an error (its
    message as :func:`server_message` words it) and
    :class:`~pipevisor.errors.ProtocolError` when the frame does not answer
    this call.
    """
    if len(f.options) != 2:
        raise ProtocolError(f"{method}: response has {len(f.options)} options, want 2 (seq, method length)")
    got_seq, mlen = f.options
    if got_seq != seq:
        raise ProtocolError(f"{method}: response for sequence {got_seq}, want {seq}")
    if mlen > len(f.payload):
        raise ProtocolError(f"{method}: method length {mlen} exceeds the payload ({len(f.payload)} bytes)")
    body = f.payload[mlen:]
    if f.flags & fr.ERROR:
        raise RPCError(method, server_message(method, body.decode("utf-8", "replace")))
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"{method}: response is not JSON: {body[:64]!r}") from exc


class RPC:
    """A connection to a goridge RPC server, JSON codec.

    The socket is opened on the first call and reused. Calls are serialised
    (one in flight per connection; the object is safe to share between
    threads). After a transport or protocol failure the connection is
    dropped and the next call dials again; an :class:`RPCError` (the server
    answered with an error) keeps it.

    ``timeout`` (seconds, ``None`` for none) bounds connecting and each
    call's send and receive.
    """

    def __init__(self, address: str, *, timeout: Optional[float] = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._family, self._addr = parse_address(address)
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[BinaryIO] = None
        self._seq = 0

    def __enter__(self) -> "RPC":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except OSError:
                pass
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> Tuple[socket.socket, BinaryIO]:
        if self._sock is None or self._reader is None:
            if self._family == socket.AF_UNIX:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(self._addr)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(self._addr, timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._reader = sock.makefile("rb")
        return self._sock, self._reader

    def connect(self) -> None:
        """Open the connection now (a call opens it when needed).

        Raises :class:`OSError` when nothing listens at the address.
        """
        with self._lock:
            self._connect()

    def call(self, method: str, params: Any) -> Any:
        """Call ``method`` (for example ``"jobs.Push"``) with ``params``; return the result.

        Raises :class:`~pipevisor.errors.RPCError` with the server's message
        when the server reports an error, :class:`OSError` (including
        :class:`TimeoutError` / :class:`socket.timeout`) on transport
        failures, and :class:`~pipevisor.errors.ProtocolError` or
        :class:`~pipevisor.errors.FrameError` when the reply is not a valid
        response to this call.
        """
        with self._lock:
            self._seq = self._seq % 0xFFFFFFFF + 1
            seq = self._seq
            request = encode_request(seq, method, params)
            try:
                sock, reader = self._connect()
                sock.sendall(request)
                f = fr.read_frame(reader.read)
                if f is None:
                    raise ProtocolError(f"{method}: server closed the connection")
                return decode_response(f, seq, method)
            except RPCError:
                raise
            except (OSError, FrameError, ProtocolError):
                self._drop()
                raise
