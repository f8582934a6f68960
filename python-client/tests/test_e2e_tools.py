"""The helpers end-to-end tests can run: workers/behave.py and workers/push.py."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from fakerpc import FakeServer
from helpers import job_frame, pid_frame, reply_json, split_frames, stop_frame
from pipevisor import frame as fr

HERE = os.path.dirname(os.path.abspath(__file__))
BEHAVE = os.path.join(HERE, "workers", "behave.py")
PUSH = os.path.join(HERE, "workers", "push.py")


def attempt(n: int, **extra: Any) -> dict:
    return {"x-attempt": [str(n)], **extra}


def test_behave_worker_replies_and_log(tmp_path: Any) -> None:
    log = tmp_path / "jobs.log"
    feed = b"".join(
        [
            pid_frame(1),
            job_frame(b"", id="n", job="nack-once", headers=attempt(1)),
            job_frame(b"", id="n", job="nack-once", headers=attempt(2)),
            job_frame(b"", id="r", job="requeue-once", headers=attempt(1)),
            job_frame(b"", id="r", job="requeue-once", headers=attempt(2, **{"x-note": ["requeued"]})),
            job_frame(b"", id="e", job="error-once", headers=attempt(1)),
            job_frame(b"5", id="s", job="slow"),
            job_frame(b"", id="f", job="always-fail", headers=attempt(3)),
            stop_frame(),
        ]
    )
    env = dict(os.environ, E2E_LOG=str(log))
    env.pop("RR_RELAY", None)
    proc = subprocess.run([sys.executable, BEHAVE], input=feed, capture_output=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    frames = split_frames(proc.stdout)
    assert frames[0].flags & fr.CONTROL
    replies = frames[1:]
    assert reply_json(replies[0]) == {"type": 3, "data": {"message": "first attempt fails", "requeue": True}}
    assert reply_json(replies[1]) == {"type": 2, "data": {}}
    assert reply_json(replies[2]) == {
        "type": 4,
        "data": {"message": "try later", "delay_seconds": 1, "headers": {"x-note": ["requeued"]}},
    }
    assert reply_json(replies[3]) == {"type": 2, "data": {}}
    assert replies[4].flags == fr.ERROR and replies[4].payload == b"first attempt raises"
    assert reply_json(replies[5]) == {"type": 2, "data": {}}
    assert reply_json(replies[6])["type"] == 3
    assert len(replies) == 7
    done = [line.split()[1:] for line in log.read_text().splitlines() if line.startswith("done ")]
    assert done == [
        ["n", "1", "nack"],
        ["n", "2", "ack"],
        ["r", "1", "requeue"],
        ["r", "2", "ack:requeued"],
        ["e", "1", "error"],
        ["s", "1", "ack"],
        ["f", "3", "nack"],
    ]
    assert proc.stderr.count(b"behave.py: job") == 7  # print() went to stderr


def run_push(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, PUSH, "--rpc", address, *args], capture_output=True, timeout=30, env=dict(os.environ)
    )


def test_push_tool_single_and_batched() -> None:
    s = FakeServer(lambda m, p: {})
    try:
        proc = run_push(s.address, "--pipeline", "default", "--job", "ack", "--payload", "hi", "--count", "3",
                        "--header", "a=1", "--header", "a=2", "--key", "k")
        assert proc.returncode == 0, proc.stderr
        ids = proc.stdout.decode().split()
        assert len(set(ids)) == 3
        proc = run_push(s.address, "--pipeline", "default", "--job", "ack", "--count", "5", "--batch", "2")
        assert proc.returncode == 0, proc.stderr
        assert len(set(proc.stdout.decode().split())) == 5
        methods = [m for _, m, _ in s.requests]
        assert methods == ["jobs.Push"] * 3 + ["jobs.PushBatch"] * 3
        first = s.requests[0][2]["job"]
        assert first["headers"] == {"a": {"value": ["1", "2"]}} and first["options"]["key"] == "k"
        assert [len(p["jobs"]) for _, _, p in s.requests[3:]] == [2, 2, 1]
    finally:
        s.close()


def test_push_tool_reports_rpc_errors() -> None:
    def fail(method: str, params: Any) -> Any:
        raise Exception("consumer: unknown pipeline: nope")

    s = FakeServer(fail)
    try:
        proc = run_push(s.address, "--pipeline", "nope", "--job", "x")
        assert proc.returncode == 1
        assert b"unknown pipeline: nope" in proc.stderr
        assert proc.stdout == b""
    finally:
        s.close()
