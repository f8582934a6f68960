#!/usr/bin/env python3
"""Example Pipevisor worker: acknowledges every job it receives.

Run it under the supervisor (see examples/python.rr.yaml)::

    supervisor serve -c examples/python.rr.yaml

The supervisor starts this script with stdin/stdout as the frame relay.
``pipevisor.Consumer()`` takes those pipes over and redirects ``sys.stdout``
(and file descriptor 1) to stderr, so the ``print()`` below lands in the
supervisor's log, tagged with this worker's pid, instead of breaking the
protocol.

The script finds the ``pipevisor`` package when it is installed
(``pip install ./python-client``) or, failing that, next to this file in the
repository (``python-client/src``).
"""

from __future__ import annotations

import os
import sys

try:
    from pipevisor import Consumer
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python-client", "src"))
    from pipevisor import Consumer


def main() -> int:
    """Serve jobs until the supervisor sends stop or closes stdin."""
    consumer = Consumer()
    for task in consumer.tasks():
        # Goes to stderr: Consumer() redirected stdout when it started.
        print(f"worker {os.getpid()}: job {task.name} id={task.id} attempt={task.attempt} "
              f"pipeline={task.pipeline} {len(task.payload)} bytes")
        task.ack()
    return 0


if __name__ == "__main__":
    sys.exit(main())
