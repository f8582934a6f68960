#!/usr/bin/env python3
"""End-to-end test worker (Python twin of maxjobs.php).

It acks jobs and exits on its own after 5 of them, without asking the
supervisor first, and never reads a sixth job. Every job is appended to the
file named by E2E_LOG as ``start <id> <attempt> <pid> <name>`` and
``done <id> <attempt> ack``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python-client", "src"))

from pipevisor import Consumer  # noqa: E402


def main() -> int:
    """Serve 5 jobs, then exit."""
    log_path = os.environ.get("E2E_LOG") or os.devnull
    n = 0
    with open(log_path, "a", encoding="utf-8") as log:
        for task in Consumer().tasks():
            log.write(f"start {task.id} {task.attempt} {os.getpid()} {task.name}\n")
            log.flush()
            task.ack()
            log.write(f"done {task.id} {task.attempt} ack\n")
            log.flush()
            n += 1
            if n >= 5:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
