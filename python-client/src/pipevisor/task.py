"""A job received by a worker, and the replies it can send.

A :class:`Task` answers the supervisor exactly once: the first of
:meth:`Task.ack`, :meth:`Task.nack`, :meth:`Task.requeue`,
:meth:`Task.error` or :meth:`Task.stop_worker` (on the task or on any copy
made by :meth:`Task.with_delay` / :meth:`Task.with_header`) is sent; later
calls are ignored and return ``False``.

Reply frames carry an empty context (option 0 = 0) and RoadRunner's jobs
reply JSON (``{"type": N, "data": {...}}``) as the body. Zero or empty
fields are left out, as Go's ``omitempty`` would (a missing field reads as
zero), so the bytes equal the golden frames in ``frame/testdata``:

========  ====  ==========================================================
method    type  data
========  ====  ==========================================================
ack       2     ``{}``
nack      3     ``message``, ``requeue`` (the redelivery flag), ``delay_seconds`` (if > 0)
requeue   4     ``message``, ``delay_seconds`` (if > 0), ``headers`` (if any were set)
========  ====  ==========================================================

:meth:`Task.error` sends an ERROR frame instead, and :meth:`Task.stop_worker`
the ``{"stop":true}`` context that retires the worker.
"""

from __future__ import annotations

import enum
import json
import math
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from . import frame as fr

__all__ = ["Task", "Reply", "ACK", "NACK", "REQUEUE"]


class Reply(enum.IntEnum):
    """How a task replied. ACK, NACK and REQUEUE are the wire ``type`` values."""

    ACK = 2
    NACK = 3
    REQUEUE = 4
    ERROR = 100
    """An ERROR frame (:meth:`Task.error`); not a wire ``type``."""
    STOP = 101
    """The worker asked to be retired (:meth:`Task.stop_worker`); not a wire ``type``."""


ACK = Reply.ACK
NACK = Reply.NACK
REQUEUE = Reply.REQUEUE

_STOP_CONTEXT = b'{"stop":true}'
_ACK_FRAME = fr.encode(0, b'{"type":2,"data":{}}', (0,))

Headers = Dict[str, List[str]]
Reason = Union[str, BaseException]


class _ReplyState:
    """Shared by a task and its copies so that only one reply is ever sent."""

    __slots__ = ("lock", "reply_type", "send")

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self.lock = threading.Lock()
        self.reply_type: Optional[Reply] = None
        self.send = send


def _normalize_headers(raw: Any) -> Headers:
    """Turn the context's ``headers`` into ``{str: [str, ...]}``."""
    if not isinstance(raw, Mapping):
        return {}
    out: Headers = {}
    for key, value in raw.items():
        if type(value) is list and all(type(v) is str for v in value):
            out[str(key)] = value  # the usual case: already what JSON gave us
        elif isinstance(value, (list, tuple)):
            out[str(key)] = [str(v) for v in value]
        elif value is None:
            out[str(key)] = []
        else:
            out[str(key)] = [str(value)]
    return out


def _opt_int(value: Any) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def whole_seconds(seconds: float, what: str) -> int:
    """A delay in the whole seconds the supervisor takes, a fraction rounded up.

    Rounding down would make 0.5 an immediate retry; rounding up waits at
    least as long as asked. Raises :class:`ValueError` for a negative delay.
    """
    if seconds < 0:
        raise ValueError(f"{what} must be >= 0, got {seconds}")
    return math.ceil(seconds)


class Task:
    """One job handed to this worker.

    Attributes (read-only by convention):

    - ``id``: job id.
    - ``name``: job name (the ``job`` field of the context).
    - ``payload``: the job body, bytes exactly as the producer sent them.
    - ``headers``: ``{name: [values]}``.
    - ``pipeline``, ``queue``, ``driver``: where the job came from
      (``driver`` is ``"unknown"`` when the supervisor does not say).
    - ``topic``, ``partition``, ``offset``: Kafka position; ``None``
      for other drivers.

    Create tasks with :meth:`Consumer.wait_task`; the constructor is public
    for tests that build a task from a context dict.
    """

    __slots__ = (
        "id",
        "name",
        "payload",
        "headers",
        "pipeline",
        "queue",
        "driver",
        "topic",
        "partition",
        "offset",
        "_delay",
        "_set_headers",
        "_state",
    )

    def __init__(self, context: Mapping[str, Any], payload: bytes, send: Callable[[bytes], None]) -> None:
        """Build a task from the decoded context JSON and the body.

        ``send`` receives the complete reply frame, at most once per task
        family (the task and all its copies).
        """
        self.id: str = str(context.get("id") or "")
        self.name: str = str(context.get("job") or "")
        self.payload: bytes = payload
        self.headers: Headers = _normalize_headers(context.get("headers"))
        self.pipeline: str = str(context.get("pipeline") or "")
        self.queue: str = str(context.get("queue") or "")
        self.driver: str = str(context.get("driver") or "unknown")
        topic = context.get("topic")
        self.topic: Optional[str] = str(topic) if topic else None
        self.partition: Optional[int] = _opt_int(context.get("partition"))
        self.offset: Optional[int] = _opt_int(context.get("offset"))
        self._delay = 0
        self._set_headers: Headers = {}
        self._state = _ReplyState(send)

    def __repr__(self) -> str:
        return (
            f"Task(id={self.id!r}, name={self.name!r}, pipeline={self.pipeline!r}, "
            f"attempt={self.attempt}, payload={len(self.payload)} bytes)"
        )

    # Reading the job.

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (raises :class:`UnicodeDecodeError`)."""
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON (raises :class:`ValueError` if it is not)."""
        return json.loads(self.payload)

    @property
    def attempt(self) -> int:
        """Which delivery of the job this is: 1 the first time.

        Read from the ``x-attempt`` header the supervisor sets; 1 when the
        header is absent or not a positive integer.
        """
        values = self.headers.get("x-attempt")
        if values:
            try:
                n = int(values[0])
            except ValueError:
                return 1
            return n if n > 0 else 1
        return 1

    @property
    def delay(self) -> int:
        """The ``delay_seconds`` that :meth:`nack` and :meth:`requeue` will send."""
        return self._delay

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """First value of header ``name``, or ``default`` if there is none."""
        values = self.headers.get(name)
        return values[0] if values else default

    def has_header(self, name: str) -> bool:
        """Report whether header ``name`` is present with at least one value."""
        return bool(self.headers.get(name))

    @property
    def traceparent(self) -> Optional[str]:
        """The W3C ``traceparent`` of the job, or ``None`` without tracing.

        With ``otel:`` configured the supervisor sets it to its push span
        (a child of the producer's own traceparent when the job was pushed
        with one): start the worker's spans as its children to continue
        the trace. Header names are matched case-insensitively.
        """
        return self._trace_header("traceparent")

    @property
    def tracestate(self) -> Optional[str]:
        """The W3C ``tracestate`` that goes with :attr:`traceparent`, or ``None``."""
        return self._trace_header("tracestate")

    def _trace_header(self, name: str) -> Optional[str]:
        values = self.headers.get(name)
        if not values:
            for key, v in self.headers.items():
                if key.lower() == name and v:
                    values = v
                    break
        return values[0] if values else None

    # Reply state.

    @property
    def replied(self) -> bool:
        """True once this task (or a copy of it) has replied."""
        return self._state.reply_type is not None

    @property
    def reply_type(self) -> Optional[Reply]:
        """How the task replied (a :class:`Reply`), or ``None`` before it did."""
        return self._state.reply_type

    # Copies.

    def _copy(self) -> "Task":
        t = Task.__new__(Task)
        for slot in Task.__slots__:
            setattr(t, slot, getattr(self, slot))
        t.headers = {k: list(v) for k, v in self.headers.items()}
        t._set_headers = {k: list(v) for k, v in self._set_headers.items()}
        return t

    def with_delay(self, seconds: float) -> "Task":
        """Return a copy whose :meth:`nack` / :meth:`requeue` ask for ``seconds`` of delay.

        The supervisor counts whole seconds: a fraction is rounded up (0.5
        waits 1 s), never sooner than asked. The copy shares the reply
        state: whichever of the two replies first is the only reply. Raises
        :class:`ValueError` for a negative delay.
        """
        t = self._copy()
        t._delay = whole_seconds(seconds, "delay")
        return t

    def with_header(self, name: str, value: Union[str, Sequence[str]]) -> "Task":
        """Return a copy with header ``name`` set to ``value`` (a string or a list).

        Headers set this way are the ones :meth:`requeue` sends; the
        supervisor merges them into the job's headers (a key replaces the
        existing key), so headers that were not set here stay as they are.
        """
        values = [value] if isinstance(value, str) else [str(v) for v in value]
        t = self._copy()
        t.headers[name] = list(values)
        t._set_headers[name] = list(values)
        return t

    # Replies.

    def _send_once(self, kind: Reply, frame_bytes: bytes) -> bool:
        state = self._state
        with state.lock:
            if state.reply_type is not None:
                return False
            state.reply_type = kind
            state.send(frame_bytes)
        return True

    def _reply(self, kind: Reply, data: Dict[str, Any]) -> bool:
        body = json.dumps({"type": int(kind), "data": data}, separators=(",", ":")).encode("utf-8")
        return self._send_once(kind, fr.encode(0, body, (0,)))

    def ack(self) -> bool:
        """Report success: the job is removed from its queue.

        Returns True if this was the task's reply, False if it had already
        replied (then nothing is sent).
        """
        return self._send_once(Reply.ACK, _ACK_FRAME)

    def nack(self, reason: Reason, redelivery: bool = False) -> bool:
        """Report failure.

        With ``redelivery=False`` the job is dead-lettered (or dropped when
        the pipeline has no dead-letter target). With ``redelivery=True`` it
        is retried after :attr:`delay` seconds (see :meth:`with_delay`),
        counting an attempt; past the pipeline's ``max_attempts`` it is
        dead-lettered. ``reason`` may be a string or an exception. Returns
        False, sending nothing, if the task already replied.
        """
        data: Dict[str, Any] = {"message": str(reason), "requeue": bool(redelivery)}
        if self._delay:
            data["delay_seconds"] = self._delay
        return self._reply(Reply.NACK, data)

    def requeue(self, reason: Reason) -> bool:
        """Put the job back on its queue after :attr:`delay` seconds.

        Headers set with :meth:`with_header` are sent along and merged into
        the job's headers. Counts an attempt. Returns False, sending
        nothing, if the task already replied.
        """
        data: Dict[str, Any] = {"message": str(reason)}
        if self._delay:
            data["delay_seconds"] = self._delay
        if self._set_headers:
            data["headers"] = {k: list(v) for k, v in self._set_headers.items()}
        return self._reply(Reply.REQUEUE, data)

    def error(self, reason: Reason) -> bool:
        """Report a failure with an ERROR frame (PHP's ``Worker::error``).

        The supervisor retries the job after the pipeline's backoff,
        counting an attempt, and dead-letters it past ``max_attempts``; the
        worker stays alive. Use :meth:`nack` with ``redelivery=True`` to
        choose the delay yourself. Returns False, sending nothing, if the
        task already replied.
        """
        text = str(reason).encode("utf-8", "replace")
        return self._send_once(Reply.ERROR, fr.encode(fr.ERROR, text))

    def stop_worker(self) -> bool:
        """Ask the supervisor to retire this worker instead of answering the job.

        The supervisor runs the job on another worker (no attempt spent)
        and replaces this one. After this reply :meth:`Consumer.wait_task`
        returns ``None``, so the worker loop ends and the process should
        exit. Returns False, sending nothing, if the task already replied.
        """
        return self._send_once(Reply.STOP, fr.encode(0, _STOP_CONTEXT, (len(_STOP_CONTEXT),)))
