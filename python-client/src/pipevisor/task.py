"""A job received by a worker, and the replies it can send.

A :class:`Task` answers the supervisor exactly once: the first of
:meth:`Task.ack`, :meth:`Task.nack` or :meth:`Task.requeue` (on the task or
on any copy made by :meth:`Task.with_delay` / :meth:`Task.with_header`) is
sent, later calls are ignored and return ``False``.

Reply bodies are RoadRunner's jobs reply JSON (``{"type": N, "data": {...}}``):

========  ====  ==========================================================
method    type  data
========  ====  ==========================================================
ack       2     ``{}``
nack      3     ``message``, ``requeue`` (the redelivery flag), ``delay_seconds``
requeue   4     ``message``, ``delay_seconds``, ``headers`` (only if set)
========  ====  ==========================================================
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

__all__ = ["Task", "ACK", "NACK", "REQUEUE"]

ACK = 2
"""Reply type of :meth:`Task.ack`."""
NACK = 3
"""Reply type of :meth:`Task.nack`."""
REQUEUE = 4
"""Reply type of :meth:`Task.requeue`."""

Headers = Dict[str, List[str]]
Reason = Union[str, BaseException]


class _ReplyState:
    """Shared by a task and its copies so that only one reply is ever sent."""

    __slots__ = ("lock", "reply_type", "send")

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self.lock = threading.Lock()
        self.reply_type: Optional[int] = None
        self.send = send


def _normalize_headers(raw: Any) -> Headers:
    """Turn the context's ``headers`` into ``{str: [str, ...]}``."""
    if not isinstance(raw, Mapping):
        return {}
    out: Headers = {}
    for key, value in raw.items():
        if isinstance(value, (list, tuple)):
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

        ``send`` receives the encoded reply body, at most once per task
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

    # Reply state.

    @property
    def replied(self) -> bool:
        """True once this task (or a copy of it) has replied."""
        return self._state.reply_type is not None

    @property
    def reply_type(self) -> Optional[int]:
        """:data:`ACK`, :data:`NACK` or :data:`REQUEUE` once replied, else ``None``."""
        return self._state.reply_type

    # Copies.

    def _copy(self) -> "Task":
        t = Task.__new__(Task)
        for slot in Task.__slots__:
            setattr(t, slot, getattr(self, slot))
        t.headers = {k: list(v) for k, v in self.headers.items()}
        t._set_headers = {k: list(v) for k, v in self._set_headers.items()}
        return t

    def with_delay(self, seconds: int) -> "Task":
        """Return a copy whose :meth:`nack` / :meth:`requeue` ask for ``seconds`` of delay.

        The copy shares the reply state: whichever of the two replies first
        is the only reply. Raises :class:`ValueError` for a negative delay.
        """
        seconds = int(seconds)
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, got {seconds}")
        t = self._copy()
        t._delay = seconds
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

    def _reply(self, reply_type: int, data: Dict[str, Any]) -> bool:
        body = json.dumps({"type": reply_type, "data": data}, separators=(",", ":")).encode("utf-8")
        state = self._state
        with state.lock:
            if state.reply_type is not None:
                return False
            state.reply_type = reply_type
            state.send(body)
        return True

    def ack(self) -> bool:
        """Report success: the job is removed from its queue.

        Returns True if this was the task's reply, False if it had already
        replied (then nothing is sent).
        """
        return self._reply(ACK, {})

    def nack(self, reason: Reason, redelivery: bool = False) -> bool:
        """Report failure.

        With ``redelivery=False`` the job is dead-lettered (or dropped when
        the pipeline has no dead-letter target). With ``redelivery=True`` it
        is retried after :attr:`delay` seconds (see :meth:`with_delay`),
        counting an attempt. ``reason`` may be a string or an exception.
        Returns False, sending nothing, if the task already replied.
        """
        return self._reply(
            NACK,
            {"message": str(reason), "requeue": bool(redelivery), "delay_seconds": self._delay},
        )

    def requeue(self, reason: Reason) -> bool:
        """Put the job back on its queue after :attr:`delay` seconds.

        Headers set with :meth:`with_header` are sent along and merged into
        the job's headers. Counts an attempt. Returns False, sending
        nothing, if the task already replied.
        """
        data: Dict[str, Any] = {"message": str(reason), "delay_seconds": self._delay}
        if self._set_headers:
            data["headers"] = {k: list(v) for k, v in self._set_headers.items()}
        return self._reply(REQUEUE, data)
