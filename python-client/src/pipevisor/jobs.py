"""The producer side: push jobs and manage pipelines over the supervisor's RPC.

:class:`Jobs` speaks the ``jobs.*`` service (RoadRunner's jobs.v1 messages,
JSON codec). Bodies, as sent and received:

- ``jobs.Push``: ``{"job": Job}``; ``jobs.PushBatch``: ``{"jobs": [Job, ...]}``.
  ``Job`` is ``{"job": name, "id": id, "payload": base64, "headers":
  {name: {"value": [...]}}, "options": {"priority", "pipeline", "delay",
  "auto_ack", "key"}}``, zero and empty fields left out as Go's
  ``omitempty`` would. Replies are ``{}``.
- ``jobs.Pause`` / ``jobs.Resume`` / ``jobs.Destroy``: ``{"pipelines": [...]}``.
- ``jobs.List``: ``{}`` -> ``{"pipelines": [...]}``.
- ``jobs.Stat``: ``{}`` -> ``{"stats": [Stat, ...]}``.
- ``jobs.Declare``: ``{"pipeline": {key: value-string}}``.
- ``jobs.FailedList``: ``{"pipeline", "limit"}`` -> ``{"jobs": [FailedJob, ...]}``;
  ``jobs.FailedShow``: ``{"id", "pipeline"}`` -> ``FailedJob``;
  ``jobs.FailedRetry`` / ``jobs.FailedRemove``: ``{"ids": [...], "all",
  "pipeline"}`` -> ``{"ids": [...]}``. ``FailedJob`` is ``{"job": Job,
  "reason", "attempts", "died_at": unix-nanoseconds}``.

The exact bytes are pinned by the golden frames in ``rpc/testdata`` (see
``rpc/doc.go``).

Every push returns only after the supervisor has the broker's confirmation.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from .errors import FrameError, ProtocolError, PushError, RPCError
from .rpc import DEFAULT_ADDRESS, RPC
from .task import whole_seconds

__all__ = ["Jobs", "PushJob", "PipelineStat", "FailedJob", "HeadersIn"]

HeadersIn = Mapping[str, Union[str, Sequence[str]]]
"""Headers as a producer gives them: a value is a string or a list of strings."""


@dataclass
class PushJob:
    """One job for :meth:`Jobs.push_batch` (the arguments of :meth:`Jobs.push`)."""

    pipeline: str
    job: str
    payload: Union[bytes, str]
    delay: float = 0
    priority: int = 0
    key: str = ""
    headers: Optional[HeadersIn] = None
    auto_ack: bool = False
    id: Optional[str] = None


@dataclass
class PipelineStat:
    """The state of one pipeline, from ``jobs.Stat``.

    ``active``: jobs received and not yet settled; ``delayed``: waiting for
    a delay (-1 unknown); ``queued``: waiting on the broker (-1 unknown);
    ``ready``/``consuming``: the pipeline is consuming (``error`` says why
    not); ``acked``/``retried``/``requeued``/``dead``: counters since the
    supervisor started.
    """

    pipeline: str = ""
    driver: str = ""
    queue: str = ""
    active: int = 0
    delayed: int = 0
    reserved: int = 0
    ready: bool = False
    priority: int = 0
    queued: int = 0
    acked: int = 0
    retried: int = 0
    requeued: int = 0
    dead: int = 0
    consuming: bool = False
    error: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)
    """Fields the server sent that this client does not know."""

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "PipelineStat":
        """Build from one element of the ``stats`` array; missing fields keep their zero value."""
        known = {f.name for f in fields(cls)} - {"extra"}
        stat = cls(**{k: v for k, v in obj.items() if k in known})
        stat.extra = {k: v for k, v in obj.items() if k not in known}
        return stat


@dataclass
class FailedJob:
    """A failed (dead) job, from ``jobs.FailedList`` or ``jobs.FailedShow``.

    ``reason`` says why it died: the worker's NACK message, the error frame,
    or a crash or exec_ttl with the tail of the worker's stderr.
    ``attempts`` is the attempt that died; ``died_at`` is when, as Unix
    seconds (``None`` when the broker did not record it).
    """

    id: str
    pipeline: str
    job: str
    payload: bytes
    headers: Dict[str, List[str]]
    priority: int
    key: str
    attempts: int
    reason: str
    died_at: Optional[float]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "FailedJob":
        j = obj.get("job") or {}
        o = j.get("options") or {}
        headers = {str(k): [str(x) for x in (v or {}).get("value") or []] for k, v in (j.get("headers") or {}).items()}
        ns = int(obj.get("died_at") or 0)
        return cls(
            id=str(j.get("id") or ""),
            pipeline=str(o.get("pipeline") or ""),
            job=str(j.get("job") or ""),
            payload=base64.b64decode(j.get("payload") or ""),
            headers=headers,
            priority=int(o.get("priority") or 0),
            key=str(o.get("key") or ""),
            attempts=int(obj.get("attempts") or 0),
            reason=str(obj.get("reason") or ""),
            died_at=ns / 1e9 if ns else None,
        )


def _payload_bytes(payload: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be bytes or str, not {type(payload).__name__}")


def _headers_json(headers: Optional[HeadersIn]) -> Dict[str, Dict[str, List[str]]]:
    out: Dict[str, Dict[str, List[str]]] = {}
    for name, value in (headers or {}).items():
        values = [value] if isinstance(value, str) else [str(v) for v in value]
        out[str(name)] = {"value": values}
    return out


def _declare_value(v: Any) -> str:
    """A jobs.Declare value: strings as is, booleans as true/false, containers as JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def job_json(j: PushJob) -> Dict[str, Any]:
    """The JSON object of one job as ``jobs.Push`` expects it; ``j.id`` must be set.

    Raises :class:`ValueError` for an empty pipeline, an empty job name, a
    negative delay or a missing id, and :class:`TypeError` for a payload
    that is neither bytes nor str.
    """
    if not j.pipeline:
        raise ValueError("push: pipeline is required")
    if not j.job:
        raise ValueError("push: job name is required")
    delay = whole_seconds(j.delay, "push: delay")
    if not j.id:
        raise ValueError("push: job id is required")
    # Zero and empty fields are left out, the way the Go side encodes them
    # (omitempty); a missing field reads as its zero value.
    options: Dict[str, Any] = {}
    if j.priority:
        options["priority"] = int(j.priority)
    options["pipeline"] = j.pipeline
    if delay:
        options["delay"] = delay
    if j.auto_ack:
        options["auto_ack"] = True
    if j.key:
        options["key"] = j.key
    out: Dict[str, Any] = {"job": j.job, "id": j.id}
    payload = _payload_bytes(j.payload)
    if payload:
        out["payload"] = base64.b64encode(payload).decode("ascii")
    headers = _headers_json(j.headers)
    if headers:
        out["headers"] = headers
    out["options"] = options
    return out


class Jobs:
    """Producer and control client for the supervisor's ``jobs.*`` RPC.

    ``address`` is ``tcp://host:port`` or ``unix://path``; when omitted the
    ``RR_RPC`` environment variable is used (the supervisor sets it for its
    workers), then ``tcp://127.0.0.1:6001``. ``timeout`` bounds each call in
    seconds. Server errors raise :class:`~pipevisor.errors.RPCError`
    carrying the server's message; transport failures raise
    :class:`OSError`. :meth:`push` and :meth:`push_batch` raise
    :class:`~pipevisor.errors.PushError` (an ``RPCError``) for both, with
    the job ids sorted into confirmed, failed and in doubt.

    The connection is opened lazily and reused; close it with
    :meth:`close` or a ``with`` block.
    """

    def __init__(self, address: Optional[str] = None, *, timeout: Optional[float] = 30.0) -> None:
        self.address = address or os.environ.get("RR_RPC") or DEFAULT_ADDRESS
        self._rpc = RPC(self.address, timeout=timeout)

    def __enter__(self) -> "Jobs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the RPC connection."""
        self._rpc.close()

    def push(
        self,
        pipeline: str,
        job: str,
        payload: Union[bytes, str],
        *,
        delay: float = 0,
        priority: int = 0,
        key: str = "",
        headers: Optional[HeadersIn] = None,
        auto_ack: bool = False,
        id: Optional[str] = None,
    ) -> str:
        """Push one job to ``pipeline`` and return its id.

        ``payload`` is sent unchanged (a str is UTF-8 encoded). ``delay`` is
        in seconds, a fraction rounded up to a whole second. ``key`` orders jobs: jobs with the same key are handled
        in push order (Kafka record key, SQS FIFO group, memory lane).
        ``id`` defaults to a new UUID4. Returns once the broker confirmed
        the job; otherwise raises :class:`~pipevisor.errors.PushError`,
        whose ``failed`` or ``in_doubt`` holds the id.
        """
        j = PushJob(pipeline, job, payload, delay, priority, key, headers, auto_ack, id or str(uuid.uuid4()))
        self._push_call("jobs.Push", {"job": job_json(j)}, [j.id or ""])
        return j.id or ""

    def push_batch(self, jobs: Iterable[Union[PushJob, Mapping[str, Any]]]) -> List[str]:
        """Push several jobs in one call and return their ids, in order.

        Each item is a :class:`PushJob` or a mapping with the keyword
        arguments of :meth:`push` plus ``pipeline``, ``job`` and
        ``payload``. Jobs without an id get a new UUID4. Returns once the
        broker confirmed every job. Otherwise raises
        :class:`~pipevisor.errors.PushError`, whose ``confirmed``,
        ``failed`` (not in the queue: safe to push again) and ``in_doubt``
        (may be in the queue: pushing again may duplicate them) sort the
        ids. An invalid job or an unknown pipeline publishes none.
        """
        batch: List[PushJob] = []
        for item in jobs:
            j = item if isinstance(item, PushJob) else PushJob(**dict(item))
            if not j.id:
                j = PushJob(**{**j.__dict__, "id": str(uuid.uuid4())})
            batch.append(j)
        if not batch:
            return []
        ids = [j.id or "" for j in batch]
        self._push_call("jobs.PushBatch", {"jobs": [job_json(j) for j in batch]}, ids)
        return ids

    def _push_call(self, method: str, params: Any, ids: List[str]) -> None:
        """Call a push method for the jobs ``ids``; any failure becomes a
        :class:`PushError` that sorts them into confirmed, failed and in
        doubt."""
        try:
            self._rpc.connect()
        except OSError as exc:
            raise PushError(method, str(exc), failed=ids, from_server=False) from exc
        try:
            self._rpc.call(method, params)
        except RPCError as exc:
            raise PushError.from_server_error(exc, ids) from exc
        except (OSError, ProtocolError, FrameError) as exc:
            text = str(exc)
            if text.startswith(method + ": "):
                text = text[len(method) + 2 :]
            raise PushError(method, text, in_doubt=ids, from_server=False) from exc

    def pause(self, *pipelines: str) -> None:
        """Stop consuming from the named pipelines (pushing still works)."""
        self._rpc.call("jobs.Pause", {"pipelines": list(pipelines)})

    def resume(self, *pipelines: str) -> None:
        """Start consuming again from the named pipelines."""
        self._rpc.call("jobs.Resume", {"pipelines": list(pipelines)})

    def list(self) -> List[str]:
        """Names of the pipelines the supervisor knows."""
        result = self._rpc.call("jobs.List", {}) or {}
        return [str(p) for p in result.get("pipelines") or []]

    def stat(self) -> List[PipelineStat]:
        """The state of every pipeline."""
        result = self._rpc.call("jobs.Stat", {}) or {}
        return [PipelineStat.from_json(s) for s in result.get("stats") or []]

    def declare(self, pipeline: Mapping[str, Any]) -> None:
        """Create a pipeline at run time from its keys (``name``, ``driver``, config keys).

        Values are sent as strings; a dict or list value is sent as JSON
        text, the way RoadRunner expects nested keys.
        """
        body = {str(k): _declare_value(v) for k, v in pipeline.items()}
        self._rpc.call("jobs.Declare", {"pipeline": body})

    def destroy(self, *pipelines: str) -> List[str]:
        """Stop and remove the named pipelines; return the ones destroyed."""
        result = self._rpc.call("jobs.Destroy", {"pipelines": list(pipelines)}) or {}
        return [str(p) for p in result.get("pipelines") or []]

    def failed_list(self, pipeline: Optional[str] = None, *, limit: int = 0) -> List[FailedJob]:
        """Failed jobs of ``pipeline``, or of every pipeline whose driver
        keeps them when ``None``; at most ``limit`` (0: all)."""
        if limit < 0:
            raise ValueError("limit must not be negative")
        body: Dict[str, Any] = {}
        if pipeline:
            body["pipeline"] = pipeline
        if limit:
            body["limit"] = limit
        result = self._rpc.call("jobs.FailedList", body) or {}
        return [FailedJob.from_json(f) for f in result.get("jobs") or []]

    def failed_show(self, id: str, pipeline: Optional[str] = None) -> FailedJob:
        """One failed job with its payload; raises :class:`RPCError`
        ("no such failed job") when no pipeline holds it."""
        body: Dict[str, Any] = {"id": id}
        if pipeline:
            body["pipeline"] = pipeline
        return FailedJob.from_json(self._rpc.call("jobs.FailedShow", body) or {})

    def failed_retry(self, *ids: str, all: bool = False, pipeline: Optional[str] = None) -> List[str]:
        """Push failed jobs back to their pipelines as attempt 1 with their
        headers: the ``ids``, or every one (of ``pipeline``) with
        ``all=True``. Each leaves the failed jobs only once the broker
        confirmed its push. Returns the ids retried; ids no pipeline holds
        raise :class:`RPCError` naming them (the others were retried)."""
        return self._failed_call("jobs.FailedRetry", ids, all, pipeline)

    def failed_remove(self, *ids: str, all: bool = False, pipeline: Optional[str] = None) -> List[str]:
        """Delete failed jobs: the ``ids``, or every one (of ``pipeline``)
        with ``all=True``. Returns the ids removed."""
        return self._failed_call("jobs.FailedRemove", ids, all, pipeline)

    def _failed_call(self, method: str, ids: Sequence[str], all: bool, pipeline: Optional[str]) -> List[str]:
        if all and ids:
            raise ValueError("give ids or all=True, not both")
        if not all and not ids:
            return []
        body: Dict[str, Any] = {"all": True} if all else {"ids": list(ids)}
        if pipeline:
            body["pipeline"] = pipeline
        result = self._rpc.call(method, body) or {}
        return [str(i) for i in result.get("ids") or []]
