"""Producer: request bodies for every jobs.* method, replies, errors, addresses."""

from __future__ import annotations

import base64
import os
import socket
import tempfile
import uuid
from typing import Any, Iterator

import pytest

from fakerpc import FakeServer
from pipevisor import Jobs, PipelineStat, ProtocolError, PushError, PushJob, RPCError
from pipevisor import frame as fr
from pipevisor.rpc import parse_address


def empty(method: str, params: Any) -> Any:
    return {}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer(empty)
    yield s
    s.close()


def test_push_body_and_frame(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        jid = jobs.push("default", "app.Send", b"\x00\xffdata", id="id-1")
    assert jid == "id-1"
    (f, method, params) = server.requests[0]
    assert method == "jobs.Push"
    assert f.flags == fr.CODEC_JSON
    assert f.options == (1, len("jobs.Push"))
    assert params == {
        "job": {
            "job": "app.Send",
            "id": "id-1",
            "payload": base64.b64encode(b"\x00\xffdata").decode(),
            "options": {"pipeline": "default"},
        }
    }


def test_push_with_every_option(server: FakeServer) -> None:
    jobs = Jobs(server.address)
    jid = jobs.push(
        "p", "j", "héllo", delay=5, priority=3, key="user-7", headers={"a": "1", "b": ["2", "3"]}, auto_ack=True
    )
    assert str(uuid.UUID(jid)) == jid
    job = server.requests[0][2]["job"]
    assert base64.b64decode(job["payload"]) == "héllo".encode()
    assert job["headers"] == {"a": {"value": ["1"]}, "b": {"value": ["2", "3"]}}
    assert job["options"] == {"priority": 3, "pipeline": "p", "delay": 5, "auto_ack": True, "key": "user-7"}
    jobs.close()


def test_fractional_delay_is_rounded_up_not_dropped(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        jobs.push("p", "j", b"", delay=0.5)
        jobs.push_batch([{"pipeline": "p", "job": "j", "payload": b"", "delay": 1.2}])
        with pytest.raises(ValueError):
            jobs.push("p", "j", b"", delay=-0.5)
    assert server.requests[0][2]["job"]["options"] == {"pipeline": "p", "delay": 1}
    assert server.requests[1][2]["jobs"][0]["options"] == {"pipeline": "p", "delay": 2}


def test_empty_payload_and_headers_are_left_out(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        jobs.push("p", "j", b"", id="e", headers={})
    assert server.requests[0][2] == {"job": {"job": "j", "id": "e", "options": {"pipeline": "p"}}}


def test_sequence_numbers_increase_on_one_connection(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        for _ in range(3):
            jobs.push("p", "j", b"")
    assert [f.options[0] for f, _, _ in server.requests] == [1, 2, 3]
    assert server.connections == 1


def test_push_validates_arguments(server: FakeServer) -> None:
    jobs = Jobs(server.address)
    with pytest.raises(ValueError):
        jobs.push("", "j", b"")
    with pytest.raises(ValueError):
        jobs.push("p", "", b"")
    with pytest.raises(ValueError):
        jobs.push("p", "j", b"", delay=-1)
    with pytest.raises(TypeError):
        jobs.push("p", "j", 12)  # type: ignore[arg-type]
    assert server.requests == []


def test_push_batch(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        ids = jobs.push_batch(
            [
                PushJob("p", "a", b"1", id="x"),
                {"pipeline": "q", "job": "b", "payload": "2", "delay": 2, "key": "k"},
            ]
        )
        assert jobs.push_batch([]) == []
    assert ids[0] == "x" and str(uuid.UUID(ids[1])) == ids[1]
    ((_, method, params),) = server.requests
    assert method == "jobs.PushBatch"
    assert [j["id"] for j in params["jobs"]] == ids
    assert params["jobs"][1]["options"] == {"pipeline": "q", "delay": 2, "key": "k"}


def test_pause_resume_list_stat_declare_destroy() -> None:
    def handler(method: str, params: Any) -> Any:
        return {
            "jobs.List": {"pipelines": ["a", "b"]},
            "jobs.Stat": {
                "stats": [
                    {"pipeline": "a", "driver": "memory", "active": 2, "ready": True, "priority": 10,
                     "acked": 5, "consuming": True, "new_field": 1},
                    {"pipeline": "b"},
                ]
            },
            "jobs.Destroy": {"pipelines": params.get("pipelines", [])},
        }.get(method, {})

    s = FakeServer(handler)
    try:
        with Jobs(s.address) as jobs:
            assert jobs.pause("a", "b") is None
            assert jobs.resume("a") is None
            assert jobs.list() == ["a", "b"]
            stats = jobs.stat()
            jobs.declare({"name": "n", "driver": "memory", "priority": 3, "durable": True, "tags": {"x": "y"}})
            assert jobs.destroy("n") == ["n"]
        assert [(m, p) for _, m, p in s.requests] == [
            ("jobs.Pause", {"pipelines": ["a", "b"]}),
            ("jobs.Resume", {"pipelines": ["a"]}),
            ("jobs.List", {}),
            ("jobs.Stat", {}),
            ("jobs.Declare", {"pipeline": {"name": "n", "driver": "memory", "priority": "3", "durable": "true",
                                           "tags": '{"x":"y"}'}}),
            ("jobs.Destroy", {"pipelines": ["n"]}),
        ]
        assert stats[0] == PipelineStat(pipeline="a", driver="memory", active=2, ready=True, priority=10, acked=5,
                                        consuming=True, extra={"new_field": 1})
        assert stats[1] == PipelineStat(pipeline="b")
    finally:
        s.close()


def test_server_error_raises_rpc_error_and_keeps_the_connection() -> None:
    def handler(method: str, params: Any) -> Any:
        if params["job"]["options"]["pipeline"] == "nope":
            raise Exception("consumer: unknown pipeline: nope")
        return {}

    s = FakeServer(handler)
    try:
        with Jobs(s.address) as jobs:
            with pytest.raises(RPCError) as info:
                jobs.push("nope", "j", b"")
            assert info.value.message == "consumer: unknown pipeline: nope"
            assert info.value.method == "jobs.Push"
            jobs.push("ok", "j", b"")
        assert s.connections == 1
    finally:
        s.close()


def test_mismatched_sequence_drops_the_connection() -> None:
    calls = []

    def handler(method: str, params: Any) -> Any:
        calls.append(method)
        if len(calls) == 1:
            return fr.encode(fr.CODEC_JSON, method.encode() + b"{}", (99, len(method)))
        return {}

    s = FakeServer(handler)
    try:
        with Jobs(s.address) as jobs:
            with pytest.raises(PushError) as info:
                jobs.push("p", "j", b"", id="a")
            # The push went out; with no valid answer it may have been published.
            assert isinstance(info.value.__cause__, ProtocolError)
            assert info.value.in_doubt == ["a"] and not info.value.from_server
            jobs.push("p", "j", b"")  # dials again
        assert s.connections == 2
    finally:
        s.close()


def test_unix_socket_and_rr_rpc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = FakeServer(empty, unix_path=os.path.join(d, "rpc.sock"))
        try:
            monkeypatch.setenv("RR_RPC", s.address)
            with Jobs() as jobs:
                assert jobs.address == s.address
                jobs.pause("x")
            assert s.requests[0][1] == "jobs.Pause"
        finally:
            s.close()


def test_default_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RR_RPC", raising=False)
    assert Jobs().address == "tcp://127.0.0.1:6001"


def test_an_empty_tcp_host_is_localhost() -> None:
    # The supervisor passes rpc.listen on in RR_RPC as it is, and ":6001" listens on every interface.
    assert parse_address("tcp://:6001") == (socket.AF_INET, ("127.0.0.1", 6001))
    s = FakeServer(empty)
    try:
        with Jobs(s.address.replace("127.0.0.1", "")) as jobs:
            jobs.pause("x")
        assert s.requests[0][1] == "jobs.Pause"
    finally:
        s.close()


def test_connection_refused_is_an_os_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        Jobs(f"tcp://127.0.0.1:{port}", timeout=5).list()


@pytest.mark.parametrize("bad", ["127.0.0.1:6001", "tcp://nohost", "http://x:1", "unix://", "tcp://:x"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_address(bad)
