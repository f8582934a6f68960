#!/usr/bin/env python3
"""End-to-end test worker (Python twin of tests/testdata/workers/behave.php).

What it does with a job depends on the job name; every job start and finish
is appended to the file named by E2E_LOG as::

    start <id> <attempt> <pid> <name>
    done <id> <attempt> <reply>

It also print()s one line per job, to show that print() cannot break the
frame stream (the line ends up on stderr). Job names:

- ``nack-once``: nack with redelivery on attempt 1, then ack.
- ``always-fail``: nack with redelivery every time.
- ``hang-once``: sleep for an hour on attempt 1 (the test kills the worker), then ack.
- ``slow``: sleep payload milliseconds, then ack.
- ``requeue-once``: on attempt 1 requeue after 1 s with header x-note=requeued;
  then ack and log ``ack:<x-note>``.
- ``error-once``: an ERROR frame (Task.error) on attempt 1, then ack.
- anything else: ack.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))

from pipevisor import Consumer, Task  # noqa: E402


def handle(task: Task) -> str:
    """Reply to ``task`` according to its name; return the word to log."""
    name, attempt = task.name, task.attempt
    if name == "nack-once" and attempt == 1:
        task.nack("first attempt fails", redelivery=True)
        return "nack"
    if name == "always-fail":
        task.nack("always fails", redelivery=True)
        return "nack"
    if name == "hang-once" and attempt == 1:
        time.sleep(3600)  # the test kills this worker
    if name == "slow":
        time.sleep(int(task.text or "0") / 1000)
    if name == "requeue-once":
        if attempt == 1:
            task.with_delay(1).with_header("x-note", "requeued").requeue("try later")
            return "requeue"
        task.ack()
        return "ack:" + (task.header("x-note") or "")
    if name == "error-once" and attempt == 1:
        task.error("first attempt raises")
        return "error"
    task.ack()
    return "ack"


def main() -> int:
    """Serve jobs until the supervisor stops this worker."""
    log_path = os.environ.get("E2E_LOG") or os.devnull
    with open(log_path, "a", encoding="utf-8") as log:
        for task in Consumer().tasks():
            log.write(f"start {task.id} {task.attempt} {os.getpid()} {task.name}\n")
            log.flush()
            print(f"behave.py: job {task.name} {task.id} attempt {task.attempt}")  # lands on stderr
            reply = handle(task)
            log.write(f"done {task.id} {task.attempt} {reply}\n")
            log.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
