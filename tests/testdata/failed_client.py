"""Failed jobs through the Python producer client:

    python3 failed_client.py RPC list|show ID|retry ID...|remove-all

prints the result as one line of JSON.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python-client", "src"))

from pipevisor import Jobs  # noqa: E402


def view(f):
    return {"id": f.id, "pipeline": f.pipeline, "job": f.job, "payload": f.payload.decode(), "headers": f.headers,
            "attempts": f.attempts, "reason": f.reason, "died": f.died_at is not None}


with Jobs(sys.argv[1]) as jobs:
    action = sys.argv[2]
    if action == "list":
        out = [view(f) for f in jobs.failed_list()]
    elif action == "show":
        out = view(jobs.failed_show(sys.argv[3]))
    elif action == "retry":
        out = jobs.failed_retry(*sys.argv[3:])
    else:
        out = jobs.failed_remove(all=True)
    print(json.dumps(out))
