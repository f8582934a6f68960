"""A request over the supervisor's RPC frame limit is reported with the limit."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from fakerpc import FakeServer
from pipevisor import Jobs, RPCError
from pipevisor.rpc import server_message

# What the supervisor answers to a frame over its limit.
REFUSED = "rpc: request of 64.0 MiB exceeds the RPC frame limit of 64 MiB (67108912 > 67108864 bytes)"


def refuse(method: str, params: Any) -> Any:
    raise Exception(REFUSED)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer(refuse)
    yield s
    s.close()


def test_push_over_the_frame_limit_names_it(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        with pytest.raises(RPCError) as err:
            jobs.push("default", "big", b"x")
    assert str(err.value) == (
        "jobs.Push: push of 64.0 MiB exceeds the RPC frame limit of 64 MiB (67108912 > 67108864 bytes)"
    )
    assert err.value.method == "jobs.Push"


def test_push_batch_over_the_frame_limit_names_it(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        with pytest.raises(RPCError, match=r"^jobs\.PushBatch: push of 64\.0 MiB exceeds the RPC frame limit of 64 MiB"):
            jobs.push_batch([{"pipeline": "default", "job": "a", "payload": b"x"}])


def test_server_message() -> None:
    assert server_message("jobs.Stat", REFUSED) == (
        "request of 64.0 MiB exceeds the RPC frame limit of 64 MiB (67108912 > 67108864 bytes)"
    )
    limit = "rpc: request of 3145728 bytes"  # not the refusal's form: left as is
    assert server_message("jobs.Push", limit) == limit
    assert server_message("jobs.Push", 'pipeline "x" does not exist') == 'pipeline "x" does not exist'
    small = "rpc: request of 3.0 MiB exceeds the RPC frame limit of 2 MiB (3145728 > 2097152 bytes)"
    assert server_message("jobs.PushBatch", small) == (
        "push of 3 MiB exceeds the RPC frame limit of 2 MiB (3145728 > 2097152 bytes)"
    )
