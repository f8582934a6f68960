"""examples/worker.py as a real subprocess: stdout carries frames only, print() goes to stderr."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from helpers import REPO, job_frame, pid_frame, reply_json, split_frames, stop_frame
from pipevisor import frame as fr

WORKER = os.path.join(REPO, "examples", "worker.py")


def worker_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(REPO, "python-client", "src")
    env.pop("RR_RELAY", None)
    env.update(extra)
    return env


def test_worker_over_pipes_keeps_stdout_clean() -> None:
    feed = pid_frame(1) + job_frame(b"first", id="a") + job_frame(b"second", id="b") + stop_frame()
    proc = subprocess.run(
        [sys.executable, WORKER], input=feed, capture_output=True, env=worker_env(), timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    frames = split_frames(proc.stdout)  # raises FrameError on any stray byte
    assert len(frames) == 3
    assert frames[0].flags & fr.CONTROL
    assert json.loads(frames[0].payload)["pid"] > 0
    assert [reply_json(f) for f in frames[1:]] == [{"type": 2, "data": {}}] * 2
    # The example's print() output went to stderr instead.
    assert b"id=a" in proc.stderr and b"id=b" in proc.stderr


def test_worker_exits_on_stdin_eof() -> None:
    proc = subprocess.run(
        [sys.executable, WORKER], input=pid_frame(1), capture_output=True, env=worker_env(), timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert len(split_frames(proc.stdout)) == 1


def test_raw_fd_writes_and_child_processes_cannot_reach_the_relay() -> None:
    code = (
        "import os, subprocess, sys\n"
        "from pipevisor import Consumer\n"
        "c = Consumer()\n"
        "os.write(1, b'raw fd write\\n')\n"
        "subprocess.run(['echo', 'child stdout'])\n"
        "print(input.__name__, sys.stdin.read() == '')\n"
        "for t in c.tasks():\n"
        "    t.ack()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=pid_frame(1) + job_frame() + stop_frame(),
        capture_output=True,
        env=worker_env(),
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(split_frames(proc.stdout)) == 2
    assert b"raw fd write" in proc.stderr and b"child stdout" in proc.stderr
    assert b"input True" in proc.stderr


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_worker_over_socket_relay(kind: str, tmp_path: Any) -> None:
    if kind == "tcp":
        ln = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ln.bind(("127.0.0.1", 0))
        relay = "tcp://127.0.0.1:%d" % ln.getsockname()[1]
    else:
        ln = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = str(tmp_path / "relay.sock")
        ln.bind(path)
        relay = "unix://" + path
    with ln:
        ln.listen(1)
        ln.settimeout(30)
        proc = subprocess.Popen(
            [sys.executable, WORKER],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env(RR_RELAY=relay),
        )
        try:
            conn, _ = ln.accept()
            with conn:
                conn.settimeout(30)
                conn.sendall(pid_frame(1) + job_frame(id="t1") + stop_frame())
                got = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    frames = split_frames(got)
    assert json.loads(frames[0].payload) == {"pid": proc.pid}
    assert reply_json(frames[1]) == {"type": 2, "data": {}}
    assert out == b""  # print() went to stderr here too
    assert b"id=t1" in err
