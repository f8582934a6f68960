"""The golden RPC frames in rpc/testdata (described by vectors.json), byte for byte.

A server thread replays the recorded replies on one connection; the client
must send exactly the recorded request frames, in order, and turn each
reply into the documented return value or RPCError.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any, Callable, Dict, List

import pytest

from helpers import REPO
from pipevisor import Jobs, PipelineStat, PushJob, RPCError
from pipevisor import frame as fr

TESTDATA = os.path.join(REPO, "rpc", "testdata")


def load() -> List[Dict[str, Any]]:
    with open(os.path.join(TESTDATA, "vectors.json"), encoding="utf-8") as fh:
        return json.load(fh)["vectors"]


VECTORS = load()


def read(name: str) -> bytes:
    with open(os.path.join(TESTDATA, name), "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_files_match_their_description(v: Dict[str, Any]) -> None:
    for side in ("request", "reply"):
        d = v[side]
        f = fr.decode(read(d["file"]))
        method = v["method"].encode()
        assert f.flags == d["flags"]
        assert bool(f.flags & fr.ERROR) == d["error"]
        assert f.options == (v["seq"], len(method))
        assert f.payload == method + d["body"].encode("utf-8")


class Replay:
    """Accepts one connection and answers request k with reply file k."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.address = "tcp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.received: List[bytes] = []
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            reader = conn.makefile("rb")
            for v in VECTORS:
                f = fr.read_frame(reader.read)
                if f is None:
                    return
                self.received.append(f.to_bytes())
                conn.sendall(read(v["reply"]["file"]))
            reader.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(30)


CALLS: Dict[str, Callable[[Jobs], Any]] = {
    "push": lambda j: j.push(
        "emails",
        "App\\Jobs\\SendMail",
        b'{"to":"a@example.com"}',
        id="0f8fad5b-d9cb-469f-a165-70867728950e",
        priority=5,
        delay=30,
        key="customer-42",
        headers={"x-tenant": "acme", "x-trace": ["a", "b"]},
    ),
    "push_batch": lambda j: j.push_batch(
        [
            PushJob("images", "App\\Jobs\\Resize", b"img-1", key="album-7", id="id-1"),
            PushJob("images", "App\\Jobs\\Resize", b"img-2", priority=1, auto_ack=True, id="id-2"),
        ]
    ),
    "stat": lambda j: j.stat(),
    "pause": lambda j: j.pause("emails", "images"),
    "pause_error": lambda j: j.pause("nope"),
    "resume": lambda j: j.resume("emails"),
    "list": lambda j: j.list(),
    "declare": lambda j: j.declare({"driver": "memory", "name": "reports", "priority": 10, "prefetch": "100"}),
    "destroy": lambda j: j.destroy("reports"),
}

EXPECTED: Dict[str, Any] = {
    "push": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "push_batch": ["id-1", "id-2"],
    "stat": [
        PipelineStat(pipeline="emails", driver="memory", queue="emails", active=5, delayed=1, ready=True,
                     priority=10, queued=3, acked=120, retried=4, requeued=1, dead=2, consuming=True,
                     extra={"running": 2, "waiting_delay": 1}),
        PipelineStat(pipeline="images", driver="amqp", queue="images", priority=5, queued=-1,
                     error="paused", extra={"waiting_delay": -1}),
    ],
    "pause": None,
    "resume": None,
    "list": ["emails", "images"],
    "declare": None,
    "destroy": ["reports"],
}


def test_client_sends_the_golden_requests_and_reads_the_golden_replies() -> None:
    assert sorted(CALLS) == sorted(v["name"] for v in VECTORS)
    server = Replay()
    try:
        with Jobs(server.address, timeout=30) as jobs:
            for v in VECTORS:
                name = v["name"]
                if v["reply"]["error"]:
                    with pytest.raises(RPCError) as info:
                        CALLS[name](jobs)
                    assert info.value.message == v["reply"]["body"]
                    assert info.value.method == v["method"]
                else:
                    assert CALLS[name](jobs) == EXPECTED[name], name
    finally:
        server.close()
    assert len(server.received) == len(VECTORS)
    for v, got in zip(VECTORS, server.received):
        assert got == read(v["request"]["file"]), v["name"]
