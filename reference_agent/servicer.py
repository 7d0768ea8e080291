"""The thin gRPC adapter: parse and validate, call the domain, map errors to status codes.

The servicer's methods are synchronous and run on a work thread (reference_agent.calls); the
handlers around them, and health and reflection, are coroutines on grpc's asyncio server."""
from __future__ import annotations

import asyncio
import os
import time
from contextlib import contextmanager

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from protos import AgentService_pb2, AgentService_pb2_grpc, Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.errors import ProtocolError
from reference_agent.calls import (Aborted, Busy, CallContext, CallCounts, WorkPool, deadline_of, first_message,
                                   work_threads_for_machine)

SERVICE = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
_REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
HEALTH_CHECK = f"/{_HEALTH.full_name}/{_HEALTH.methods_by_name['Check'].name}"
HEALTH_WATCH = f"/{_HEALTH.full_name}/{_HEALTH.methods_by_name['Watch'].name}"
REFLECTION_INFO = f"/{_REFLECTION.full_name}/{_REFLECTION.methods_by_name['ServerReflectionInfo'].name}"
# Seconds a call may take to send its request message after its headers (a half-open call is ended)
DEFAULT_REQUEST_TIMEOUT = 10.0
# Largest RunJob request answered on the event loop (parsing a larger one would hold the loop)
INLINE_BYTES = 16 * 1024


@contextmanager
def protocol_errors(context):
    """The one place where a domain error becomes a gRPC status (context.abort raises; on a work
    thread the context is a reference_agent.calls.CallContext)."""
    try:
        yield
    except ProtocolError as exc:
        context.abort(exc.code, exc.message)


class AgentServicer(AgentService_pb2_grpc.AgentServicer):
    """Agent's two RPCs over a core (reference_agent.domain.AgentCore or a subclass)."""

    def __init__(self, core):
        self.core = core

    def StageInFiles(self, request, context):
        with protocol_errors(context), self.core.serving(lambda: _waiting(context)):
            staged = self.core.stage_in(self.core.parse_stage_request(request))
        return StageInFile_pb2.StageInFilesResponse(
            success_files=[StageInFile_pb2.StagedFile(file=Common_pb2.FileId(uuid=f)) for f in staged])

    def RunJob(self, request, context):
        with protocol_errors(context):
            state = self.core.run_job(self.core.parse_run_request(request))
        return RunJob_pb2.RunJobResponse(code=int(state))

    def status_now(self, data: bytes) -> tuple[bytes, str] | None:
        """RunJob's answer (response bytes, job id) to `data` when it is a status query the core
        answers without waiting (AgentCore.status_if_free), else None: the call then goes to a
        work thread as any other. Runs on the event loop, so a poll costs no thread hand-off."""
        try:
            req = self.core.parse_run_request(RunJob_pb2.RunJobRequest.FromString(data))
            state = self.core.status_if_free(req)
        except Exception:  # noqa: BLE001 - bad bytes, a bad field...: the work thread answers with its error
            return None
        if state is None:
            return None
        return RunJob_pb2.RunJobResponse(code=int(state)).SerializeToString(), req.job


def _waiting(context) -> bool:
    """Whether the client still waits for this RPC: not cancelled, deadline not passed."""
    remaining = context.time_remaining()
    return context.is_active() and (remaining is None or remaining > 0)


def _job_of(request) -> str | None:
    """The job id as sent, cut to 64 characters so a huge bad value cannot flood the log."""
    try:
        value = request.job.uuid if request.HasField("job") and request.job.HasField("uuid") else None
        if isinstance(value, bytes):  # a proto2 string that is not UTF-8 comes back as bytes
            value = value.decode("utf-8", "backslashreplace")
    except Exception:  # noqa: BLE001 - logging must not fail an RPC
        return None
    return value if value is None or len(value) <= 64 else value[:61] + "..."


def _code_name(context, failed: bool) -> str:
    """The status an RPC ends with: the one set on the context, else OK or UNKNOWN (raised)."""
    code = _status_of(context)
    return code if code != "UNKNOWN" else ("UNKNOWN" if failed else "OK")


class RawAgentHandler(grpc.GenericRpcHandler):
    """Serves the servicer's methods on raw bytes, so that bytes which do not parse get
    INVALID_ARGUMENT (AGT-ERR-1) instead of grpcio's generic INTERNAL, and logs one line per
    RPC with its status code. Method names come from the service descriptor.

    Each method is served on the asyncio server as a request-streaming handler (the wire is the
    same as unary): it reads the one request message with a deadline (`request_timeout`), then
    parses, serves and serializes on a thread of `work` (a bounded WorkPool: RESOURCE_EXHAUSTED
    when full). `bytes_call` is the synchronous part, a hook for broken agents.

    `inline_polls`: a RunJob status query of a known job (at most INLINE_BYTES) is answered on
    the event loop when the core can answer it without waiting (AgentServicer.status_now); the
    reference agent only (AgentServer.agent_handler): a broken agent's hooks may block."""

    def __init__(self, servicer: AgentServicer, telemetry, log: bool = True, work: WorkPool | None = None,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT, counts: CallCounts | None = None,
                 inline_polls: bool = False):
        self.telemetry = telemetry
        self.status_now = servicer.status_now if inline_polls else None
        self.counts = counts if counts is not None else CallCounts()
        self.log = log
        self.work = work if work is not None else WorkPool(work_threads_for_machine(os.cpu_count()), 256)
        self.request_timeout = request_timeout
        self._handlers = {}
        for method in SERVICE.methods:
            request_class = message_factory.GetMessageClass(method.input_type)
            call = self.bytes_call(method.name, request_class, getattr(servicer, method.name))
            self._handlers[f"/{SERVICE.full_name}/{method.name}"] = grpc.stream_unary_rpc_method_handler(
                self._serve(method.name, call))

    def service(self, handler_call_details):
        return self._handlers.get(handler_call_details.method)

    def by_method_name(self) -> dict:
        """{"RunJob": handler, ...} for grpc's registered-method fast path."""
        return {path.rsplit("/", 1)[1]: handler for path, handler in self._handlers.items()}

    def bytes_call(self, name: str, request_class, behaviour):
        """The work of one call on a work thread: bytes in, bytes out; a CallContext as context."""
        def call(data: bytes, context: CallContext) -> bytes:
            try:
                request = request_class.FromString(data)
            except DecodeError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"request bytes do not parse as {request_class.DESCRIPTOR.name}: {exc}")
            context.job = _job_of(request)
            return behaviour(request, context).SerializeToString()

        return call

    def _serve(self, name: str, call):
        telemetry, log, work, timeout, counts = self.telemetry, self.log, self.work, self.request_timeout, self.counts
        status_now = self.status_now if name == "RunJob" else None

        async def handle(_requests, context):
            start = time.perf_counter()
            code, size, calling, job = "UNKNOWN", None, None, None
            try:
                data = await first_message(context, timeout, counts)
                size = len(data)
                if status_now is not None and size <= INLINE_BYTES:
                    answered = status_now(data)
                    if answered is not None:
                        code, job = "OK", answered[1]
                        return answered[0]
                calling = CallContext(context, deadline_of(context))
                try:
                    response = await work.run(call, data, calling)
                except Aborted as exc:
                    code = exc.code.name
                    await context.abort(exc.code, exc.details)
                except Busy as exc:
                    code = "RESOURCE_EXHAUSTED"
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
                code = "OK"
                return response
            except asyncio.CancelledError:
                code = "CANCELLED"
                if calling is not None:
                    calling.cancel()  # long staging stops between files (AgentCore.serving)
                raise
            except BaseException:
                if size is None and code == "UNKNOWN":
                    code = _status_of(context)
                raise
            finally:
                telemetry.rpc(name, code, time.perf_counter() - start, log=log,
                              job=calling.job if calling is not None else job, bytes=size)

        return handle


def _status_of(context) -> str:
    """The code of a call ended before its message came (half-open, or no message at all)."""
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - logging must not fail an RPC
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return "UNKNOWN"


class LoggedHealthServicer(health.aio.HealthServicer):
    """The standard (asyncio) health service, logging each call with its status code (no
    interceptor: an interceptor would tax every Agent RPC as well)."""

    def __init__(self, telemetry):
        super().__init__()
        self.telemetry = telemetry

    async def Check(self, request, context):
        start, failed = time.perf_counter(), True
        try:
            response = await super().Check(request, context)
            failed = False
            return response
        finally:
            self.telemetry.rpc(HEALTH_CHECK, _code_name(context, failed), time.perf_counter() - start)

    async def Watch(self, request, context):
        self.telemetry.rpc(HEALTH_WATCH, "STREAM", 0.0)
        await super().Watch(request, context)


class LoggedReflectionServicer(reflection.aio.ReflectionServicer):
    """Server reflection (asyncio) with one log line per stream when it starts."""

    def __init__(self, service_names, telemetry, **kwargs):
        super().__init__(service_names, **kwargs)
        self.telemetry = telemetry

    async def ServerReflectionInfo(self, request_iterator, context):
        self.telemetry.rpc(REFLECTION_INFO, "STREAM", 0.0)
        async for response in super().ServerReflectionInfo(request_iterator, context):
            yield response
