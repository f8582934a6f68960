"""Exceptions raised by the pipevisor client.

Every exception derives from :class:`PipevisorError`, so ``except
pipevisor.PipevisorError`` catches anything this package raises on purpose.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence

__all__ = ["PipevisorError", "FrameError", "ProtocolError", "RPCError", "PushError", "PUSH_REPORT_MARKER"]


class PipevisorError(Exception):
    """Base class of every error raised by the pipevisor package."""


class FrameError(PipevisorError):
    """A goridge frame could not be decoded.

    Raised for a header CRC mismatch, an impossible header length, an
    unsupported version, or a stream that ends in the middle of a frame.
    """


class ProtocolError(PipevisorError):
    """The peer sent a well-formed frame that breaks the protocol.

    Examples: a job frame without the context-length option, an RPC reply
    for another sequence number, or a control frame that is not JSON.
    """


class RPCError(PipevisorError):
    """The RPC server answered a call with an error.

    ``message`` is the server's error text, unchanged; ``method`` is the
    RPC method that failed (for example ``"jobs.Push"``).
    """

    def __init__(self, method: str, message: str) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method
        self.message = message


#: Starts the report the supervisor appends to the error text of a push
#: that did not confirm every job.
PUSH_REPORT_MARKER = " pipevisor-push-report="


class PushError(RPCError):
    """A push (:meth:`Jobs.push` or :meth:`Jobs.push_batch`) whose jobs were
    not all confirmed by the broker. The job ids of the call are sorted into
    three lists:

    ``confirmed``
        the broker confirmed the job; it is in the queue.
    ``failed``
        the broker refused the job or it was never sent; it is not in the
        queue, and pushing it again is safe.
    ``in_doubt``
        the job was sent but its confirm was lost (the broker connection or
        channel closed, a confirm timeout, or the connection to the
        supervisor broke before its answer); it may be in the queue, and
        pushing it again may duplicate it.

    ``from_server`` is true when the supervisor answered with the error;
    otherwise ``__cause__`` is the transport failure (an :class:`OSError`,
    :class:`ProtocolError` or :class:`FrameError`). ``message`` is the
    supervisor's text without its report, or the failure's.
    """

    def __init__(
        self,
        method: str,
        message: str,
        *,
        confirmed: Sequence[str] = (),
        failed: Sequence[str] = (),
        in_doubt: Sequence[str] = (),
        from_server: bool = True,
    ) -> None:
        super().__init__(method, message)
        self.confirmed: List[str] = list(confirmed)
        self.failed: List[str] = list(failed)
        self.in_doubt: List[str] = list(in_doubt)
        self.from_server = from_server

    @classmethod
    def from_server_error(cls, err: RPCError, ids: Sequence[str]) -> "PushError":
        """The PushError for ``err``, the supervisor's answer to a push of
        ``ids`` (in request order): a report sorts them; no report means the
        supervisor refused the call before publishing (all failed); a report
        that does not cover every id exactly once leaves all in doubt."""
        text = err.message
        at = text.rfind(PUSH_REPORT_MARKER)
        if at < 0:
            return cls(err.method, text, failed=ids)
        groups = _decode_report(text[at + len(PUSH_REPORT_MARKER):], ids)
        if groups is None:
            return cls(err.method, text, in_doubt=ids)
        return cls(err.method, text[:at], confirmed=groups[0], failed=groups[1], in_doubt=groups[2])


def _decode_report(text: str, ids: Sequence[str]) -> Optional[List[List[str]]]:
    """Decode {"confirmed":[[first,last],...],"failed":...,"in_doubt":...}
    (inclusive index ranges) into three id lists, or None when it does not
    cover every id exactly once."""
    try:
        report: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(report, dict):
        return None
    seen = set()
    out: List[List[str]] = []
    for key in ("confirmed", "failed", "in_doubt"):
        group: List[str] = []
        for r in report.get(key) or []:
            if (
                not isinstance(r, list)
                or len(r) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                or not 0 <= r[0] <= r[1] < len(ids)
            ):
                return None
            for i in range(r[0], r[1] + 1):
                if i in seen:
                    return None
                seen.add(i)
                group.append(ids[i])
        out.append(group)
    return out if len(seen) == len(ids) else None
