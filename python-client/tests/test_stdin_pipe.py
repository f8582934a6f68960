"""The consumer over a real stdin pipe: it reads a job frame whole however the
bytes arrive, and nothing past it, so the frames the supervisor queued behind
it (jobs.pool.pipelining) stay in the pipe, where the supervisor counts them
as never started if the worker dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, List

import pytest

from helpers import REPO, job_frame

# A worker that takes NTASKS tasks, writes "task <id>" for each to stderr
# ("end" when the input ends, "FrameError ..." when it breaks), then, with a
# file name as its argument, starts a `cat` reading the pipe the consumer
# reads (descriptor 0, or the consumer's copy of it once descriptor 0 is
# /dev/null) to copy what the consumer left unread into that file.
WORKER = r"""
import os, subprocess, sys
from pipevisor import Consumer
from pipevisor.errors import FrameError

redirect = os.environ["REDIRECT"] == "1"
c = Consumer(redirect_stdio=redirect)
try:
    for _ in range(int(os.environ["NTASKS"])):
        t = c.wait_task()
        if t is None:
            sys.stderr.write("end\n")
            break
        sys.stderr.write("task %s\n" % t.id)
except FrameError as e:
    sys.stderr.write("FrameError %s\n" % e)
sys.stderr.flush()
if len(sys.argv) > 1:
    fd = c._in.fileno() if redirect else 0
    with open(sys.argv[1], "wb") as f:
        subprocess.run(["cat"], stdin=fd, stdout=f, check=True)
"""

MODES = pytest.mark.parametrize("redirect", [True, False], ids=["redirect_stdio", "fd0"])


def run_worker(redirect: bool, ntasks: int, chunks: List[bytes], *args: str) -> "subprocess.CompletedProcess[bytes]":
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(REPO, "python-client", "src")
    env.pop("RR_RELAY", None)
    env.update(REDIRECT="1" if redirect else "0", NTASKS=str(ntasks))
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, *args], stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    finally:
        os.close(r)
    try:
        try:
            for i, chunk in enumerate(chunks):
                if i:
                    time.sleep(0.1)
                assert os.write(w, chunk) == len(chunk)
        finally:
            os.close(w)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@MODES
def test_the_next_frame_stays_in_the_pipe(redirect: bool, tmp_path: Any) -> None:
    a = job_frame(b"first", id="a")
    b = job_frame(b"second " * 10, id="b")
    rest = tmp_path / "rest"
    # One write: both frames are in the pipe before the worker's first read.
    proc = run_worker(redirect, 1, [a + b], str(rest))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"task a\n"
    assert rest.read_bytes() == b, "what the consumer left unread in the pipe"


@MODES
def test_frames_arriving_in_pieces_are_read_whole(redirect: bool) -> None:
    a = job_frame(b"first", id="a")
    b = job_frame(b"second", id="b")
    data, n = a + b, len(a)
    # Cut inside the first header, inside its payload, across the boundary
    # and inside the second header.
    cuts = [0, 5, 25, n + 3, n + 7, len(data)]
    proc = run_worker(redirect, 3, [data[i:j] for i, j in zip(cuts, cuts[1:])])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"task a\ntask b\nend\n"


@MODES
def test_end_of_input_inside_a_frame_is_an_error(redirect: bool) -> None:
    a = job_frame(b"first", id="a")
    in_header = run_worker(redirect, 2, [a + a[:7]])
    in_payload = run_worker(redirect, 2, [a + a[:20]])
    assert in_header.stderr == b"task a\nFrameError frame: stream ended after 7 of 12 bytes\n"
    assert in_payload.stderr == b"task a\nFrameError frame: stream ended after 8 of %d bytes\n" % (len(a) - 12)
