"""The golden frames in frame/testdata (described by vectors.json), byte for byte.

Every file must decode to what vectors.json says and re-encode to the same
bytes; frames sent to the worker must drive the Consumer as expected, and
frames the worker sends must be exactly what the Task replies produce.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, List

import pytest

from helpers import REPO
from pipevisor import Consumer
from pipevisor import frame as fr

TESTDATA = os.path.join(REPO, "frame", "testdata")


def load_vectors() -> List[Dict[str, Any]]:
    with open(os.path.join(TESTDATA, "vectors.json"), encoding="utf-8") as fh:
        return json.load(fh)


VECTORS = {v["name"]: v for v in load_vectors()}


def golden(name: str) -> bytes:
    with open(os.path.join(TESTDATA, VECTORS[name]["file"]), "rb") as fh:
        return fh.read()


def test_vectors_are_present() -> None:
    for name in ("handshake_request", "handshake_reply", "stop", "job", "reply_ack", "reply_nack",
                 "reply_nack_requeue", "reply_requeue", "reply_worker_stop", "error"):
        assert name in VECTORS, name


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_decode_and_reencode(name: str) -> None:
    v = VECTORS[name]
    data = golden(name)
    f = fr.read_frame(io.BytesIO(data).read)
    assert f is not None
    payload = (v["context"] + v["body"]).encode("utf-8")
    assert (f.flags, list(f.options), f.payload) == (v["flags"], v["options"], payload)
    assert fr.encode(v["flags"], payload, v["options"]) == data
    if v["options"]:
        assert f.options[0] == len(v["context"].encode("utf-8"))


def run(stream: bytes) -> "tuple[Consumer, io.BytesIO]":
    out = io.BytesIO()
    return Consumer(io.BytesIO(stream), out), out


def test_handshake_reply_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getpid", lambda: 31337)
    c, out = run(golden("handshake_request") + golden("stop"))
    assert c.wait_task() is None
    assert out.getvalue() == golden("handshake_reply")


def test_job_frame_becomes_a_task() -> None:
    c, _ = run(golden("job"))
    t = c.wait_task()
    assert t is not None
    ctx = json.loads(VECTORS["job"]["context"])
    assert t.id == ctx["id"] == "9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91"
    assert t.name == "App\\Jobs\\SendWelcomeEmail"
    assert (t.driver, t.queue, t.pipeline) == ("amqp", "emails", "emails")
    assert t.headers == ctx["headers"]
    assert t.attempt == 1
    assert t.payload == VECTORS["job"]["body"].encode()
    assert t.json() == {"user_id": 42, "template": "welcome", "locale": "en"}


REPLIES = {
    "reply_ack": lambda t: t.ack(),
    "reply_nack": lambda t: t.nack("invalid payload: missing user_id"),
    "reply_nack_requeue": lambda t: t.with_delay(5).nack("database is busy", redelivery=True),
    "reply_requeue": lambda t: t.with_header("x-retry-reason", "rate-limit").with_delay(30).requeue("rate limited"),
    "reply_worker_stop": lambda t: t.stop_worker(),
    "error": lambda t: t.error("RuntimeException: SMTP connection refused in /app/src/Jobs/SendWelcomeEmail.php:31"),
}


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_reply_bytes(name: str) -> None:
    c, out = run(golden("job"))
    t = c.wait_task()
    assert t is not None
    assert REPLIES[name](t) is True
    assert out.getvalue() == golden(name)
