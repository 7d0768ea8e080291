"""One call on the asyncio server: its request message read with a deadline, its blocking work on
a bounded pool of threads, and a thread-side context for the (synchronous) servicer.

A call that has not sent its request message holds a coroutine, never a thread; a call whose
message does not come within `request_timeout` seconds is ended (DEADLINE_EXCEEDED); a call
that finds `threads + queue` calls already holding or waiting for a work thread is answered
RESOURCE_EXHAUSTED at once instead of waiting without bound.
"""
from __future__ import annotations

import asyncio
import inspect
import threading
import time
from concurrent import futures

import grpc

# grpc.aio's "no more messages" marker (what context.read() returns at the end of the stream)
EOF = grpc.aio.EOF


class Aborted(Exception):
    """Raised on a work thread by CallContext.abort: the call ends with `code` and `details`."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(code, details)
        self.code = code
        self.details = details


class Busy(Exception):
    """The work pool holds its bound of calls already (answered RESOURCE_EXHAUSTED)."""


def work_threads_for_machine(cpus: int | None = None) -> int:
    """Threads for the domain's blocking work (journal commits, copies, process starts): mostly
    waiting on disks and the kernel, so more than the CPUs, as Python's own I/O pools size."""
    return min(32, max(8, (cpus or 1) + 4))


class WorkPool:
    """A ThreadPoolExecutor with a bound: at most `threads` calls run and `queue` more wait.

    The count is of calls whose work has not finished on its thread: a call its client cancelled
    still counts until its thread is done with it (a thread cannot be stopped), so the bound is
    on real work, not on what clients still wait for."""

    def __init__(self, threads: int, queue: int):
        if threads < 1 or queue < 0:
            raise ValueError(f"WorkPool(threads={threads!r}, queue={queue!r}): need threads >= 1, queue >= 0")
        self.threads = threads
        self.queue = queue
        self.limit = threads + queue
        self._executor = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="agent-work")
        self._lock = threading.Lock()
        self._pending = 0
        self.refused = 0

    @property
    def pending(self) -> int:
        """Calls running or waiting for a thread."""
        return self._pending

    def submit(self, fn, *args) -> futures.Future:
        """Run fn(*args) on a work thread; Busy when the bound is reached."""
        with self._lock:
            if self._pending >= self.limit:
                self.refused += 1
                raise Busy(f"the agent is busy: {self._pending} calls are running or queued "
                           f"(bound {self.limit}); retry with backoff")
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _future) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn, *args):
        """Await fn(*args) run on a work thread (Busy at once when the bound is reached)."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def shutdown(self, wait: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


class CallContext:
    """What a synchronous servicer method sees of its call, safe to use from a work thread:
    `abort` raises Aborted (turned into the call's status on the event loop), `is_active` and
    `time_remaining` come from the deadline and a cancellation flag, not from grpc's objects."""

    def __init__(self, context, deadline: float | None = None):
        self._metadata = tuple(context.invocation_metadata() or ())
        self._peer = context.peer()
        self._deadline = deadline  # time.monotonic() value, or None
        self._cancelled = False  # set once by the loop thread, read by the work thread
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None
        self.job: str | None = None  # for the log line, once the request parsed

    def cancel(self) -> None:
        """The client stopped waiting (called on the event loop)."""
        self._cancelled = True

    def abort(self, code: grpc.StatusCode, details: str = ""):
        raise Aborted(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str | None:
        return self._details

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return not self._cancelled and (self._deadline is None or time.monotonic() < self._deadline)

    def invocation_metadata(self):
        return self._metadata

    def peer(self) -> str:
        return self._peer


def deadline_of(context) -> float | None:
    """The call's deadline as a time.monotonic() value (None: the client set none)."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


# Calls answered within one JANITOR_PERIOD that make a flood: when the next period is quiet,
# the agent releases the flood's memory (reference_agent.server.AgentServer._janitor)
FLOOD = 256
JANITOR_PERIOD = 2.0


def release_memory() -> None:
    """Collect cycles, then hand freed heap pages back to the system (glibc's malloc_trim): after
    a flood of calls the agent's resident memory would otherwise stay at the flood's high mark."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        trim = None
    if trim is not None:  # glibc only; elsewhere nothing to do
        trim(0)


class CallCounts:
    """The calls of one server waiting for their request message, and a watchdog that ends those
    waiting longer than their timeout. One periodic sweep for all calls, not a timer per call:
    a timer per call (asyncio.timeout) cost about a third of the throughput of status polls."""

    def __init__(self):
        self.awaiting_message = 0
        self.half_open_ended = 0
        self._waiting: dict[asyncio.Task, float] = {}   # task -> loop time its deadline passes
        self._expired: set[asyncio.Task] = set()
        self._watchdog: asyncio.Task | None = None
        self._period = 1.0

    def _watch(self, task: asyncio.Task, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._waiting[task] = loop.time() + timeout
        self.awaiting_message += 1
        if self._watchdog is None or self._watchdog.done() or timeout / 4 < self._period:
            self._period = min(self._period, max(0.01, timeout / 4))
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = loop.create_task(self._sweep(), name="agent-request-deadline")

    def _unwatch(self, task: asyncio.Task) -> None:
        if self._waiting.pop(task, None) is not None:
            self.awaiting_message -= 1

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        peak = 0
        while self._waiting:
            peak = max(peak, len(self._waiting))
            await asyncio.sleep(self._period)
            now = loop.time()
            for task, deadline in list(self._waiting.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
        if peak >= FLOOD:
            self._waiting = {}  # a dict never shrinks its table

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()


async def first_message(context, timeout: float, counts: CallCounts | None = None):
    """The call's request message, or the call ended: DEADLINE_EXCEEDED when it does not come
    within `timeout` seconds (a half-open call), INVALID_ARGUMENT when the stream ends without one."""
    counts = counts if counts is not None else CallCounts()
    task = asyncio.current_task()
    counts._watch(task, timeout)
    try:
        message = await context.read()
    except asyncio.CancelledError:
        if task not in counts._expired:
            raise  # the client cancelled, or the server stops
        counts._expired.discard(task)
        task.uncancel()
        counts.half_open_ended += 1
        counts._unwatch(task)
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"no request message within {timeout:g} s of the call's start: the agent "
                            "ended the call (send the message with the headers)")
    finally:
        counts._unwatch(task)
        counts._expired.discard(task)
    if message is EOF:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call ended without a request message")
    return message


def with_request_deadline(handler: grpc.RpcMethodHandler, timeout: float,
                          counts: CallCounts | None = None) -> grpc.RpcMethodHandler:
    """`handler` (a method of an aio servicer) served so that a unary request is read with a
    deadline: the handler is made request-streaming (the wire is the same) and reads the one
    message itself. Request-streaming handlers are returned unchanged."""
    if handler is None or handler.request_streaming:
        return handler
    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if not handler.response_streaming:
        behaviour = handler.unary_unary

        async def unary(_requests, context):
            result = behaviour(await first_message(context, timeout, counts), context)
            return await result if inspect.isawaitable(result) else result

        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    behaviour = handler.unary_stream
    if inspect.isasyncgenfunction(behaviour):
        async def streamed(_requests, context):
            async for response in behaviour(await first_message(context, timeout, counts), context):
                yield response
    else:  # a coroutine that writes with context.write (grpc_health's aio Watch)
        async def streamed(_requests, context):
            result = behaviour(await first_message(context, timeout, counts), context)
            if inspect.isawaitable(result):
                await result
    return grpc.stream_stream_rpc_method_handler(streamed, **kwargs)
