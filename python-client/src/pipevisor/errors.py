"""Exceptions raised by the pipevisor client.

Every exception derives from :class:`PipevisorError`, so ``except
pipevisor.PipevisorError`` catches anything this package raises on purpose.
"""

from __future__ import annotations

__all__ = ["PipevisorError", "FrameError", "ProtocolError", "RPCError"]


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
