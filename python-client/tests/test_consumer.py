"""Worker loop: handshake, tasks, replies, stop and EOF, malformed frames."""

from __future__ import annotations

import io
import json
import os
import threading

import pytest

from helpers import job_frame, pid_frame, reply_json, split_frames, stop_frame
from pipevisor import ACK, NACK, REQUEUE, Consumer, FrameError, ProtocolError, Reply, Task
from pipevisor import frame as fr


def run(stream: bytes) -> "tuple[Consumer, io.BytesIO]":
    out = io.BytesIO()
    return Consumer(io.BytesIO(stream), out), out


def test_handshake_then_task_then_stop() -> None:
    c, out = run(pid_frame(99) + job_frame(b'{"a":1}') + stop_frame())
    tasks = []
    for task in c.tasks():
        tasks.append(task)
        assert task.ack() is True
    assert len(tasks) == 1
    frames = split_frames(out.getvalue())
    assert len(frames) == 2
    hs, reply = frames
    assert hs.flags & fr.CONTROL and hs.options == ()
    assert json.loads(hs.payload) == {"pid": os.getpid()}
    assert reply.flags == 0
    assert reply_json(reply) == {"type": 2, "data": {}}
    assert c.wait_task() is None  # stays stopped


def test_eof_ends_iteration() -> None:
    c, out = run(pid_frame())
    assert list(c.tasks()) == []
    assert len(split_frames(out.getvalue())) == 1


def test_task_fields_memory() -> None:
    c, _ = run(job_frame(b'{"n": 5}', id="abc", job="app.Send", headers={"x-attempt": ["3"], "k": ["v1", "v2"]}))
    t = c.wait_task()
    assert t is not None
    assert (t.id, t.name, t.pipeline, t.driver, t.queue) == ("abc", "app.Send", "default", "memory", "")
    assert t.payload == b'{"n": 5}' and t.text == '{"n": 5}' and t.json() == {"n": 5}
    assert t.headers == {"x-attempt": ["3"], "k": ["v1", "v2"]}
    assert t.header("k") == "v1" and t.header("nope") is None and t.has_header("k")
    assert t.attempt == 3
    assert (t.topic, t.partition, t.offset) == (None, None, None)


def test_task_fields_kafka_and_defaults() -> None:
    c, _ = run(
        job_frame(b"", driver="kafka", queue="orders", topic="orders", partition=2, offset=1234567890123)
        + job_frame(b"\xff", driver=None, headers=None)
    )
    t = c.wait_task()
    assert t is not None
    assert (t.driver, t.queue, t.topic, t.partition, t.offset) == ("kafka", "orders", "orders", 2, 1234567890123)
    assert t.payload == b"" and t.attempt == 1
    t.ack()
    u = c.wait_task()
    assert u is not None
    assert u.driver == "unknown" and u.headers == {} and u.attempt == 1 and u.payload == b"\xff"


@pytest.mark.parametrize("value", ["0", "-2", "x", ""])
def test_attempt_falls_back_to_one(value: str) -> None:
    t = Task({"headers": {"x-attempt": [value]}}, b"", lambda b: None)
    assert t.attempt == 1


def replies_for(act) -> list:
    c, out = run(job_frame())
    t = c.wait_task()
    assert t is not None
    act(t)
    return [reply_json(f) for f in split_frames(out.getvalue())]


def test_nack_reply() -> None:
    assert replies_for(lambda t: t.nack("boom")) == [
        {"type": 3, "data": {"message": "boom", "requeue": False}}
    ]
    assert replies_for(lambda t: t.with_delay(7).nack(ValueError("bad"), redelivery=True)) == [
        {"type": 3, "data": {"message": "bad", "requeue": True, "delay_seconds": 7}}
    ]


def test_fractional_delay_is_rounded_up_not_dropped() -> None:
    # delay_seconds 0 would be an immediate retry: a fraction waits the next whole second.
    assert replies_for(lambda t: t.with_delay(0.5).nack("busy", redelivery=True)) == [
        {"type": 3, "data": {"message": "busy", "requeue": True, "delay_seconds": 1}}
    ]
    assert replies_for(lambda t: t.with_delay(2.01).requeue("r")) == [
        {"type": 4, "data": {"message": "r", "delay_seconds": 3}}
    ]
    assert Task({}, b"", lambda b: None).with_delay(4.0).delay == 4
    with pytest.raises(ValueError):
        Task({}, b"", lambda b: None).with_delay(-0.5)


def test_requeue_reply() -> None:
    assert replies_for(lambda t: t.requeue("later")) == [
        {"type": 4, "data": {"message": "later"}}
    ]
    assert replies_for(lambda t: t.with_header("x-k", "v").with_header("x-l", ["a", "b"]).with_delay(3).requeue("r")) == [
        {"type": 4, "data": {"message": "r", "delay_seconds": 3, "headers": {"x-k": ["v"], "x-l": ["a", "b"]}}}
    ]


def test_copies_do_not_change_the_original() -> None:
    t = Task({"headers": {"a": ["1"]}}, b"", lambda b: None)
    u = t.with_header("a", "2").with_delay(4)
    assert t.headers == {"a": ["1"]} and t.delay == 0
    assert u.headers == {"a": ["2"]} and u.delay == 4
    with pytest.raises(ValueError):
        t.with_delay(-1)


def test_first_reply_wins_across_copies() -> None:
    sent = []
    t = Task({"id": "1"}, b"", sent.append)
    copy = t.with_delay(5)
    assert copy.nack("first", redelivery=True) is True
    assert t.ack() is False
    assert t.requeue("x") is False
    assert copy.ack() is False
    assert len(sent) == 1 and json.loads(fr.decode(sent[0]).payload)["type"] == NACK
    assert t.replied and t.reply_type == NACK


def test_first_reply_wins_across_threads() -> None:
    sent = []
    t = Task({"id": "1"}, b"", sent.append)
    results = []
    barrier = threading.Barrier(8)

    def reply(i: int) -> None:
        barrier.wait()
        results.append(t.ack() if i % 2 else t.requeue("r"))

    threads = [threading.Thread(target=reply, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5)
    assert results.count(True) == 1 and len(results) == 8
    assert len(sent) == 1 and json.loads(fr.decode(sent[0]).payload)["type"] in (ACK, REQUEUE)


def test_unanswered_task_gets_an_error_frame() -> None:
    c, out = run(job_frame(id="j1") + job_frame(id="j2"))
    first = c.wait_task()
    second = c.wait_task()
    assert first is not None and second is not None and second.id == "j2"
    assert first.reply_type == Reply.ERROR
    assert first.ack() is False  # the error frame was its one reply
    assert second.ack() is True
    frames = split_frames(out.getvalue())
    assert len(frames) == 2
    assert frames[0].flags == fr.ERROR and frames[0].options == () and b"j1" in frames[0].payload
    assert reply_json(frames[1]) == {"type": 2, "data": {}}


def test_error_reply() -> None:
    c, out = run(job_frame())
    t = c.wait_task()
    assert t is not None
    assert t.error(RuntimeError("smtp down")) is True
    assert t.nack("x") is False
    (f,) = split_frames(out.getvalue())
    assert (f.flags, f.options, f.payload) == (fr.ERROR, (), b"smtp down")


def test_stop_worker_ends_the_loop() -> None:
    c, out = run(job_frame(id="a") + job_frame(id="b"))
    seen = []
    for t in c.tasks():
        seen.append(t.id)
        assert t.stop_worker() is True
    assert seen == ["a"]
    (f,) = split_frames(out.getvalue())
    assert (f.flags, f.options, f.payload) == (0, (13,), b'{"stop":true}')


def test_malformed_job_frames_get_error_frames() -> None:
    bad = [
        fr.encode(fr.CODEC_RAW, b"no options"),
        fr.encode(fr.CODEC_RAW, b"{}", (10,)),  # context longer than the payload
        fr.encode(fr.CODEC_RAW, b"not json", (8,)),
        fr.encode(fr.CODEC_RAW, b"[1]", (3,)),
    ]
    c, out = run(b"".join(bad) + job_frame(id="ok"))
    t = c.wait_task()
    assert t is not None and t.id == "ok"
    frames = split_frames(out.getvalue())
    assert len(frames) == 4 and all(f.flags == fr.ERROR and f.options == () for f in frames)


def test_ping_gets_pong() -> None:
    c, out = run(fr.encode(0, b"", (), fr.PING))
    assert c.wait_task() is None
    (pong,) = split_frames(out.getvalue())
    assert pong.stream & fr.PONG


def test_garbage_input_raises() -> None:
    c, _ = run(b"hello world, not a frame")
    with pytest.raises(FrameError):
        c.wait_task()
    c, _ = run(fr.encode(fr.CONTROL, b"{nope"))
    with pytest.raises(ProtocolError):
        c.wait_task()


def test_constructor_needs_both_streams() -> None:
    with pytest.raises(ValueError):
        Consumer(io.BytesIO(b""))
