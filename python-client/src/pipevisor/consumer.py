"""The worker side: receive jobs from the supervisor and answer them.

The supervisor starts the worker with its stdin and stdout as the relay
(``RR_RELAY=pipes``) and exchanges goridge frames over them. Once a
:class:`Consumer` is created for those pipes, **stdout belongs to the
protocol**: the consumer keeps a private duplicate of file descriptor 1 for
its frames, points descriptor 1 at stderr and sets ``sys.stdout`` to
``sys.stderr``. A ``print()`` (or a child process writing to its stdout) then
ends up on stderr, which the supervisor logs, instead of corrupting the frame
stream. Likewise stdin is kept for frames and descriptor 0 / ``sys.stdin``
read from ``/dev/null``.

Frames are read from stdin unbuffered, and never past the frame being
handled: jobs the supervisor wrote ahead (``jobs.pool.pipelining``) stay in
the pipe until the consumer gets to them. If the worker dies or exits
without answering, the supervisor asks the kernel how many bytes of the pipe
are unread to tell which queued jobs it never started, and runs those
elsewhere without spending an attempt. Nothing should read stdin before the
consumer is created: what Python buffered then never reaches the consumer.

Typical worker::

    from pipevisor import Consumer

    for task in Consumer().tasks():
        handle(task.json())
        task.ack()
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import IO, Any, BinaryIO, Iterator, Optional

from . import frame as fr
from .errors import ProtocolError
from .task import Reply, Task

__all__ = ["Consumer"]


def _open_socket_relay(address: str) -> socket.socket:
    """Connect to a ``tcp://host:port`` or ``unix://path`` relay address."""
    if address.startswith("tcp://"):
        host, _, port = address[len("tcp://") :].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad relay address {address!r}: want tcp://host:port")
        return socket.create_connection((host.strip("[]"), int(port)))
    if address.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address[len("unix://") :])
        except BaseException:
            sock.close()
            raise
        return sock
    raise ValueError(f"bad relay address {address!r}: want pipes, tcp://host:port or unix://path")


class Consumer:
    """Receives tasks from the supervisor over one relay.

    ``Consumer()`` with no arguments uses the relay named by the
    ``RR_RELAY`` environment variable: ``pipes`` (the default; the process's
    stdin and stdout, taken over as described in the module documentation
    unless ``redirect_stdio=False``), ``tcp://host:port`` or
    ``unix://path``. With a socket relay only ``sys.stdout`` is pointed at
    ``sys.stderr`` (so worker output lands in one place); the file
    descriptors are left alone.

    With the pipes relay frames are read from an unbuffered stdin (see the
    module documentation). A socket relay is read through a buffer that may
    read ahead: writing ahead and the unread-byte count concern the stdin
    pipe only; a socket relay carries one job at a time and nothing looks
    at what it holds unread, and the buffer saves a ``recv`` per frame.

    ``Consumer(input_stream, output_stream)`` uses the given binary streams
    instead (for tests or embedding); nothing global is touched then. The
    consumer reads ``input_stream`` as it is; pass an unbuffered one (for
    example ``open(fd, "rb", buffering=0)``) for the same guarantee.

    Create one consumer per process, before anything is printed: taking
    over stdin/stdout is done once and cannot be repeated.

    The consumer answers the supervisor's pid handshake itself, ends at the
    supervisor's stop frame or when its input ends, and is not thread-safe:
    call :meth:`wait_task` from one thread (a task may reply from any
    thread).
    """

    def __init__(
        self,
        input_stream: Optional[BinaryIO] = None,
        output_stream: Optional[BinaryIO] = None,
        *,
        redirect_stdio: bool = True,
    ) -> None:
        if (input_stream is None) != (output_stream is None):
            raise ValueError("give both input_stream and output_stream, or neither")
        self._sock: Optional[socket.socket] = None
        self._owned: list[IO[bytes]] = []
        if input_stream is not None and output_stream is not None:
            self._in, self._out = input_stream, output_stream
        else:
            relay = os.environ.get("RR_RELAY", "pipes") or "pipes"
            if relay == "pipes":
                self._in, self._out = self._take_stdio(redirect_stdio)
            else:
                self._sock = _open_socket_relay(relay)
                self._in = self._sock.makefile("rb")
                self._out = self._sock.makefile("wb")
                self._owned = [self._in, self._out]
                if redirect_stdio:
                    sys.stdout.flush()
                    sys.stdout = sys.stderr
        self._read = self._in.read
        self._write_lock = threading.Lock()
        self._done = False
        self._current: Optional[Task] = None

    def _take_stdio(self, redirect: bool) -> "tuple[BinaryIO, BinaryIO]":
        """Claim stdin/stdout for frames; see the module documentation.

        Frames are read with a raw, unbuffered file on the stdin pipe, so
        that each read is one read(2) of at most what the frame lacks.
        """
        if not redirect:
            # A raw file on descriptor 0 that does not own it. Not
            # sys.stdin.buffer (it reads ahead) nor its .raw (a replaced
            # sys.stdin may have none).
            inp = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115 - lives as long as the consumer
            self._owned = [inp]
            return inp, sys.stdout.buffer
        sys.stdout.flush()
        out_fd = os.dup(1)
        in_fd = os.dup(0)
        os.dup2(2, 1)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null_fd, 0)
        finally:
            os.close(null_fd)
        sys.stdout = sys.stderr
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        out = os.fdopen(out_fd, "wb")
        inp = os.fdopen(in_fd, "rb", buffering=0)
        self._owned = [inp, out]
        return inp, out

    # Context manager and cleanup.

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the streams this consumer opened itself (never ones passed in)."""
        self._done = True
        for stream in self._owned:
            try:
                stream.close()
            except OSError:
                pass
        self._owned = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # Receiving.

    def tasks(self) -> Iterator[Task]:
        """Yield tasks until the supervisor stops the worker or the input ends."""
        while True:
            task = self.wait_task()
            if task is None:
                return
            yield task

    def wait_task(self) -> Optional[Task]:
        """Block until the next task arrives; ``None`` once the worker should exit.

        ``None`` means the supervisor sent its stop frame or closed the
        input, or the previous task replied with :meth:`Task.stop_worker`.
        If the previous task never replied, it is answered first with
        :meth:`Task.error`, which the supervisor treats as a failed attempt
        (retried with backoff, dead-lettered past max_attempts).

        Raises :class:`~pipevisor.errors.FrameError` when the input is not a
        frame stream and :class:`~pipevisor.errors.ProtocolError` when a
        control frame cannot be understood.
        """
        if self._done:
            return None
        prev, self._current = self._current, None
        if prev is not None:
            if prev.reply_type is None:
                prev.error(f"task {prev.id!r} ({prev.name}) was not answered by the worker")
            if prev.reply_type == Reply.STOP:
                self._done = True
                return None
        while True:
            f = fr.read_frame(self._read)
            if f is None:
                self._done = True
                return None
            if f.flags & fr.CONTROL:
                if self._control(f):
                    continue
                self._done = True
                return None
            if f.stream & fr.PING:
                self._send(fr.encode(0, b"", (), fr.PONG))
                continue
            if f.stream & fr.PONG and not f.payload:
                continue
            task = self._task(f)
            if task is not None:
                self._current = task
                return task

    def _control(self, f: fr.Frame) -> bool:
        """Handle a control frame; return False if it asks the worker to stop."""
        try:
            msg = json.loads(f.payload) if f.payload else {}
        except ValueError as exc:
            raise ProtocolError(f"control frame is not JSON: {f.payload[:64]!r}") from exc
        if not isinstance(msg, dict):
            raise ProtocolError(f"control frame is not a JSON object: {f.payload[:64]!r}")
        if msg.get("stop"):
            return False
        if "pid" in msg:
            pid = json.dumps({"pid": os.getpid()}, separators=(",", ":")).encode()
            self._send(fr.encode(fr.CONTROL, pid))
        return True

    def _task(self, f: fr.Frame) -> Optional[Task]:
        """Build a task from a job frame, or answer a malformed one with an error frame."""
        if len(f.options) != 1 or f.options[0] > len(f.payload):
            self._send_error(
                f"bad job frame: want one option (context length) within the payload, "
                f"got options {list(f.options)} for {len(f.payload)} payload bytes"
            )
            return None
        n = f.options[0]
        try:
            context = json.loads(f.payload[:n])
        except ValueError as exc:
            self._send_error(f"bad job context JSON: {exc}")
            return None
        if not isinstance(context, dict):
            self._send_error("bad job context: not a JSON object")
            return None
        return Task(context, f.payload[n:], self._send)

    # Sending.

    def _send(self, data: bytes) -> None:
        with self._write_lock:
            self._out.write(data)
            self._out.flush()

    def _send_error(self, message: str) -> None:
        """Send an ERROR frame: the supervisor counts a failed attempt, the worker lives on."""
        self._send(fr.encode(fr.ERROR, message.encode("utf-8", "replace")))
