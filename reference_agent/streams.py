"""A bound on concurrent streaming RPCs, so that idle streams cannot take every RPC thread."""
from __future__ import annotations

import threading

import grpc


class StreamGate:
    """At most `limit` streams of one kind at once; one more is refused at once with
    RESOURCE_EXHAUSTED. In grpcio's synchronous server a server-reflection stream holds one of
    the RPC threads for as long as the client keeps it open, idle or not: 16 idle streams used to
    block every Agent call. Streams are gated, unary calls never are."""

    def __init__(self, limit: int, what: str):
        if limit < 1:
            raise ValueError(f"StreamGate limit {limit!r}: must be >= 1")
        self.limit = limit
        self.what = what
        self._slots = threading.BoundedSemaphore(limit)

    def wrap(self, behaviour):
        """`behaviour(request_iterator, context)` (a stream-stream method), gated."""
        gate = self

        def gated(request_iterator, context):
            if not gate._slots.acquire(blocking=False):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{gate.limit} {gate.what} streams are open already: close one and retry")
            try:
                yield from behaviour(request_iterator, context)
            finally:
                gate._slots.release()

        return gated


def stream_limit(rpc_threads: int) -> int:
    """Streams of one kind allowed at once: a quarter of the RPC threads, at least one."""
    return max(1, rpc_threads // 4)
