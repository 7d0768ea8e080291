"""Streaming calls on the asyncio server: a bound on open streams of each kind, and their end with
UNAVAILABLE when the agent stops (AGT-EXT-8: clients resume by watching again)."""
from __future__ import annotations

import asyncio
import contextlib
import inspect

import grpc

STOPPING = "the agent is stopping: open streams end; call again once it is back"
# Streams of one kind open at once by default: each costs a coroutine and a little of grpc's
# memory, no thread, so the bound is about memory, not about starving unary calls.
DEFAULT_STREAMS = 128


class StreamGate:
    """At most `limit` streams of one kind at once; one more is refused at once with
    RESOURCE_EXHAUSTED. `stopping` (an asyncio.Event on the server's loop) set ends every open
    stream with UNAVAILABLE. Unary calls are never gated."""

    def __init__(self, limit: int, what: str, stopping: asyncio.Event):
        if limit < 1:
            raise ValueError(f"StreamGate limit {limit!r}: must be >= 1")
        self.limit = limit
        self.what = what
        self.stopping = stopping
        self.open = 0

    async def _enter(self, context) -> None:
        if self.stopping.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPING)
        if self.open >= self.limit:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{self.limit} {self.what} streams are open already: close one and retry")
        self.open += 1  # the loop's one thread: no lock needed

    def wrap(self, behaviour):
        """An aio stream behaviour (an async generator, or a coroutine writing with context.write)
        gated and ended at stop."""
        if inspect.isasyncgenfunction(behaviour):
            return self._wrap_generator(behaviour)
        gate = self

        async def gated(request, context):
            await gate._enter(context)
            try:
                inner = asyncio.ensure_future(behaviour(request, context))
                if await gate._first_of(inner):
                    return inner.result()
                await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPING)
            finally:
                gate.open -= 1

        return gated

    def _wrap_generator(self, behaviour):
        gate = self

        async def gated(request, context):
            await gate._enter(context)
            responses = behaviour(request, context)
            try:
                while True:
                    step = asyncio.ensure_future(responses.__anext__())
                    if not await gate._first_of(step):
                        await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPING)
                    try:
                        response = step.result()
                    except StopAsyncIteration:
                        return
                    yield response
            finally:
                gate.open -= 1
                with contextlib.suppress(Exception):
                    await responses.aclose()

        return gated

    async def _first_of(self, inner: asyncio.Future) -> bool:
        """Wait for `inner` or for the stop: True when `inner` finished first (else it is cancelled)."""
        inner.add_done_callback(_retrieved)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({inner, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not inner.done():
                inner.cancel()
                with contextlib.suppress(BaseException):
                    await inner
        return not inner.cancelled()


def _retrieved(future: asyncio.Future) -> None:
    """Mark a task's outcome as seen (its caller reads it, or no longer cares)."""
    if not future.cancelled():
        future.exception()


def gate_handler(handler: grpc.RpcMethodHandler, gate: StreamGate) -> grpc.RpcMethodHandler:
    """A streaming method handler with its behaviour gated; unary-unary handlers unchanged."""
    if handler is None or not (handler.request_streaming or handler.response_streaming):
        return handler
    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(gate.wrap(handler.stream_stream), **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(gate.wrap(handler.stream_unary), **kwargs)
    return grpc.unary_stream_rpc_method_handler(gate.wrap(handler.unary_stream), **kwargs)
