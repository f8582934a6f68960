#!/usr/bin/env python3
"""Push jobs with the Python producer, for end-to-end tests.

Usage::

    push.py --rpc tcp://127.0.0.1:6001 --pipeline default --job ack --payload hello \
            [--count 1000] [--batch 100] [--delay 0] [--key K] [--header k=v ...]

Prints one job id per line; exits 1 with the server's message on an RPC
error, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))

from pipevisor import Jobs, PushJob, RPCError  # noqa: E402


def main(argv: List[str]) -> int:
    """Parse ``argv``, push, print the ids."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rpc", default=None, help="RPC address (default: RR_RPC or tcp://127.0.0.1:6001)")
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--job", required=True)
    ap.add_argument("--payload", default="")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--batch", type=int, default=0, help="push in batches of this size (0: one push per job)")
    ap.add_argument("--delay", type=int, default=0)
    ap.add_argument("--priority", type=int, default=0)
    ap.add_argument("--key", default="")
    ap.add_argument("--header", action="append", default=[], help="k=v, repeatable")
    args = ap.parse_args(argv)
    headers: Dict[str, List[str]] = {}
    for h in args.header:
        k, sep, v = h.partition("=")
        if not sep:
            ap.error(f"--header {h!r}: want k=v")
        headers.setdefault(k, []).append(v)
    job = PushJob(args.pipeline, args.job, args.payload, args.delay, args.priority, args.key, headers or None)
    try:
        with Jobs(args.rpc) as jobs:
            if args.batch > 0:
                for start in range(0, args.count, args.batch):
                    n = min(args.batch, args.count - start)
                    for jid in jobs.push_batch([PushJob(**job.__dict__) for _ in range(n)]):
                        print(jid)
            else:
                for _ in range(args.count):
                    print(jobs.push(**{k: v for k, v in job.__dict__.items()}))
    except RPCError as exc:
        print(f"push: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
