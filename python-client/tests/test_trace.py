"""Task.traceparent and Task.tracestate read the W3C trace headers."""

from pipevisor import Task

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_traceparent_and_tracestate() -> None:
    t = Task({"headers": {"traceparent": [TP], "TraceState": ["v=1"]}}, b"", lambda b: None)
    assert t.traceparent == TP
    assert t.tracestate == "v=1"


def test_no_trace_headers() -> None:
    t = Task({"headers": {"x": ["y"], "traceparent": []}}, b"", lambda b: None)
    assert t.traceparent is None
    assert t.tracestate is None
