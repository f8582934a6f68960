"""Shared helpers for the pipevisor tests: building and splitting frame streams."""

from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, List, Optional

from pipevisor import frame as fr

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pid_frame(pid: int = 4242) -> bytes:
    """The supervisor's handshake: CONTROL|JSON {"pid":N}."""
    return fr.encode(fr.CONTROL | fr.CODEC_JSON, json.dumps({"pid": pid}).encode())


def stop_frame() -> bytes:
    """The supervisor's stop request: CONTROL|JSON {"stop":true}."""
    return fr.encode(fr.CONTROL | fr.CODEC_JSON, b'{"stop":true}')


def job_frame(body: bytes = b"payload", **context: Any) -> bytes:
    """A job frame: CodecRaw, option 0 = len(context), payload context||body."""
    ctx: Dict[str, Any] = {"id": "job-1", "job": "demo.Job", "driver": "memory", "headers": {}, "pipeline": "default"}
    ctx.update(context)
    raw = json.dumps(ctx).encode()
    return fr.encode(fr.CODEC_RAW, raw + body, (len(raw),))


def split_frames(data: bytes) -> List[fr.Frame]:
    """Decode a whole byte stream into frames; raises FrameError on any garbage."""
    stream = io.BytesIO(data)
    out: List[fr.Frame] = []
    while True:
        f = fr.read_frame(stream.read)
        if f is None:
            return out
        out.append(f)


def reply_json(f: fr.Frame) -> Optional[Dict[str, Any]]:
    """The reply body of a worker's job reply frame (context must be empty)."""
    assert f.options == (0,), f"reply options {f.options}"
    return json.loads(f.payload) if f.payload else None
