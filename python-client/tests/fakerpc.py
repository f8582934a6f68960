"""A goridge RPC server (JSON codec) in a thread, for the producer tests.

It answers each request with ``handler(method, params)``: a JSON-able
result, or an ``Exception`` whose text becomes an ERROR frame, exactly as
goridge's server codec would frame them. Every request frame is kept in
``requests`` for inspection.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any, Callable, List, Optional, Tuple

from pipevisor import frame as fr

Handler = Callable[[str, Any], Any]


class FakeServer:
    """Listens on 127.0.0.1 (or a unix socket path); serve one connection at a time."""

    def __init__(self, handler: Handler, unix_path: Optional[str] = None) -> None:
        self.handler = handler
        self.requests: List[Tuple[fr.Frame, str, Any]] = []
        self.connections = 0
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.address = f"unix://{unix_path}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = "tcp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(10)
        if self.address.startswith("unix://") and os.path.exists(self.address[7:]):
            os.unlink(self.address[7:])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                reader = conn.makefile("rb")
                try:
                    self._conn(conn, reader)
                except OSError:
                    pass
                finally:
                    reader.close()

    def _conn(self, conn: socket.socket, reader: Any) -> None:
        while True:
            f = fr.read_frame(reader.read)
            if f is None:
                return
            seq, mlen = f.options
            method = f.payload[:mlen].decode()
            params = json.loads(f.payload[mlen:])
            self.requests.append((f, method, params))
            try:
                result = self.handler(method, params)
            except Exception as exc:  # noqa: BLE001 - becomes an ERROR frame
                payload = method.encode() + str(exc).encode()
                conn.sendall(fr.encode(fr.CODEC_JSON | fr.ERROR, payload, (seq, mlen)))
                continue
            if isinstance(result, bytes):  # a raw frame to send as is
                conn.sendall(result)
                continue
            payload = method.encode() + json.dumps(result).encode()
            conn.sendall(fr.encode(fr.CODEC_JSON, payload, (seq, mlen)))
