"""Producer: a push that was not fully confirmed raises PushError with the
job ids sorted into confirmed, failed and in doubt."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from fakerpc import FakeServer
from pipevisor import Jobs, PushError, RPCError

# What the supervisor sends when job 1 failed and job 2 is in doubt
# (pinned against the Go server in rpc/pushreport_test.go).
PUSH_ERROR = (
    'jobs: push to "emails": consumer: 2 jobs of the batch not confirmed, 1 failed and 1 in doubt'
    " (job 1: broker nacked the publish)"
    ' pipevisor-push-report={"confirmed":[[0,0],[3,3]],"failed":[[1,1]],"in_doubt":[[2,2]]}'
)

FOUR = [{"pipeline": "emails", "job": "J", "payload": b"p", "id": f"id-{i}"} for i in range(4)]


def failing_with(text: str) -> FakeServer:
    def handler(method: str, params: Any) -> Any:
        raise Exception(text)

    return FakeServer(handler)


def test_partly_confirmed_batch_sorts_the_ids() -> None:
    s = failing_with(PUSH_ERROR)
    try:
        with Jobs(s.address) as jobs:
            with pytest.raises(PushError) as info:
                jobs.push_batch(FOUR)
        e = info.value
        assert e.confirmed == ["id-0", "id-3"]
        assert e.failed == ["id-1"]
        assert e.in_doubt == ["id-2"]
        assert e.from_server and e.method == "jobs.PushBatch"
        assert isinstance(e, RPCError)
        assert "pipevisor-push-report" not in str(e)
        assert e.message.startswith('jobs: push to "emails"')
    finally:
        s.close()


def test_refused_push_fails_every_job() -> None:
    s = failing_with('jobs: push to "nope": consumer: unknown pipeline')
    try:
        with Jobs(s.address) as jobs:
            with pytest.raises(PushError) as info:
                jobs.push("nope", "J", b"p", id="only")
        assert info.value.failed == ["only"]
        assert info.value.confirmed == [] and info.value.in_doubt == []
        assert info.value.message == 'jobs: push to "nope": consumer: unknown pipeline'
    finally:
        s.close()


def test_report_that_does_not_fit_leaves_all_in_doubt() -> None:
    s = failing_with('boom pipevisor-push-report={"confirmed":[[0,4]],"failed":[],"in_doubt":[]}')
    try:
        with Jobs(s.address) as jobs:
            with pytest.raises(PushError) as info:
                jobs.push_batch(FOUR)
        assert info.value.in_doubt == ["id-0", "id-1", "id-2", "id-3"]
        assert info.value.confirmed == []
    finally:
        s.close()


def test_connection_lost_during_a_push_leaves_it_in_doubt() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def accept_read_close() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)  # the request arrived; no answer

    t = threading.Thread(target=accept_read_close)
    t.start()
    try:
        with Jobs(f"tcp://127.0.0.1:{port}", timeout=5) as jobs:
            with pytest.raises(PushError) as info:
                jobs.push_batch(FOUR)
        assert info.value.in_doubt == ["id-0", "id-1", "id-2", "id-3"]
        assert info.value.failed == [] and not info.value.from_server
    finally:
        t.join(10)
        srv.close()


def test_nothing_listening_fails_every_job() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PushError) as info:
        Jobs(f"tcp://127.0.0.1:{port}", timeout=5).push("emails", "J", b"p", id="x")
    assert info.value.failed == ["x"]
    assert isinstance(info.value.__cause__, OSError)
