"""Producer: the failed-jobs methods' request bodies, replies and errors."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fakerpc import FakeServer
from pipevisor import FailedJob, Jobs, RPCError

JOB = {
    "job": {
        "job": "App\\Mail",
        "id": "j1",
        "payload": base64.b64encode(b"to:\x00a").decode(),
        "headers": {"x-tenant": {"value": ["acme"]}},
        "options": {"priority": 3, "pipeline": "emails", "key": "k"},
    },
    "reason": "bad address",
    "attempts": 2,
    "died_at": 1765000000123456789,
}


def handler(method: str, params: Any) -> Any:
    if method == "jobs.FailedList":
        return {"jobs": [JOB, {"job": {"id": "j2", "options": {"pipeline": "images"}}}]}
    if method == "jobs.FailedShow":
        if params["id"] != "j1":
            raise Exception('jobs: "%s": consumer: no such failed job' % params["id"])
        return JOB
    if method in ("jobs.FailedRetry", "jobs.FailedRemove"):
        return {"ids": params.get("ids") or ["j1", "j2"]}
    return {}


@pytest.fixture
def server() -> Any:
    s = FakeServer(handler)
    yield s
    s.close()


def test_failed_list_and_show(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        dead = jobs.failed_list("emails", limit=10)
        assert server.requests[-1][1:] == ("jobs.FailedList", {"pipeline": "emails", "limit": 10})
        assert dead[0] == FailedJob(
            id="j1", pipeline="emails", job="App\\Mail", payload=b"to:\x00a", headers={"x-tenant": ["acme"]},
            priority=3, key="k", attempts=2, reason="bad address", died_at=1765000000.1234567,
        )
        assert dead[1].died_at is None and dead[1].reason == "" and dead[1].pipeline == "images"
        jobs.failed_list()
        assert server.requests[-1][1:] == ("jobs.FailedList", {})
        assert jobs.failed_show("j1").reason == "bad address"
        assert server.requests[-1][1:] == ("jobs.FailedShow", {"id": "j1"})
        with pytest.raises(RPCError, match="no such failed job"):
            jobs.failed_show("zz")


def test_failed_retry_and_remove(server: FakeServer) -> None:
    with Jobs(server.address) as jobs:
        assert jobs.failed_retry("j1", "j2") == ["j1", "j2"]
        assert server.requests[-1][1:] == ("jobs.FailedRetry", {"ids": ["j1", "j2"]})
        assert jobs.failed_remove(all=True, pipeline="emails") == ["j1", "j2"]
        assert server.requests[-1][1:] == ("jobs.FailedRemove", {"all": True, "pipeline": "emails"})
        n = len(server.requests)
        assert jobs.failed_retry() == []
        assert len(server.requests) == n, "no ids: nothing is sent"
        with pytest.raises(ValueError):
            jobs.failed_remove("j1", all=True)
