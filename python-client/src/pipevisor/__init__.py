"""Python client for Pipevisor (and RoadRunner's jobs plugin).

Worker side: :class:`Consumer` receives :class:`Task` objects from the
supervisor over stdin/stdout and each task replies once with
:meth:`Task.ack`, :meth:`Task.nack` or :meth:`Task.requeue`.

Producer side: :class:`Jobs` pushes jobs and manages pipelines over the
supervisor's RPC socket (goridge RPC, JSON codec).

Standard library only; Python 3.9 or newer.
"""

from .consumer import Consumer
from .errors import FrameError, PipevisorError, ProtocolError, PushError, RPCError
from .jobs import FailedJob, Jobs, PipelineStat, PushJob
from .rpc import RPC
from .task import ACK, NACK, REQUEUE, Reply, Task

__all__ = [
    "ACK",
    "NACK",
    "REQUEUE",
    "Consumer",
    "FailedJob",
    "FrameError",
    "Jobs",
    "PipelineStat",
    "PushJob",
    "RPC",
    "PipevisorError",
    "ProtocolError",
    "PushError",
    "RPCError",
    "Reply",
    "Task",
]

__version__ = "0.1.0"
