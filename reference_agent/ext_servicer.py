"""The AgentExtensions service on grpc.aio: a thin adapter from raw bytes to the core's extension hooks."""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Callable

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from protos import AgentExtensions_pb2, Common_pb2, errors, extensions, validation
from protos.errors import ProtocolError, ResourceExhausted
from protos.states import JobState
from reference_agent.calls import Busy
from reference_agent.watch import HubClosed

SERVICE = AgentExtensions_pb2.DESCRIPTOR.services_by_name["AgentExtensions"]
# The extension each method belongs to (AGT-EXT-2); GetCapabilities belongs to none.
METHOD_EXTENSION = {method: name for name, method in extensions.METHODS.items()}
SHUTTING_DOWN = "the agent is shutting down: watch again once it is back (the first events give the current states)"


def caller_of(context) -> str:
    """Who opens a watch stream, for its bound (AGT-EXT-9): its token when it sent one (hashed:
    never kept or logged), else its host (every connection from one host counts together)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            raw = value if isinstance(value, bytes) else str(value).encode()
            return "token " + hashlib.sha256(raw).hexdigest()[:16]
    peer = context.peer() or "unknown"
    return "host " + (peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer)


def _job_id(message: Common_pb2.JobId, field: str) -> str:
    if not message.HasField("uuid"):
        raise errors.missing_field(f"{field}.uuid" if field else "uuid")
    return validation.parse_uuid(message.uuid, f"{field}.uuid" if field else "uuid")


class ExtensionServicer:
    """The four methods of AgentExtensions over a core (AgentCore or a subclass). Blocking core
    calls run on the server's work pool (`work`), never on the event loop; a watch stream awaits
    its subscription, which the core's state changes fill (no polling)."""

    name = SERVICE.full_name

    def __init__(self, core, telemetry, log: bool = True, work=None):
        self.core = core
        self.telemetry = telemetry
        self.log = log
        self.work = work  # reference_agent.calls.WorkPool (its bound), or None: asyncio's default pool

    async def _run(self, fn, *args):
        """fn(*args) on a work thread, never on the event loop."""
        if self.work is None:
            return await asyncio.to_thread(fn, *args)
        try:
            return await self.work.run(fn, *args)
        except Busy as exc:
            raise ResourceExhausted(str(exc)) from None

    def add_to(self, server) -> None:
        """Register the service on a grpc.aio server (or a stand-in that hardens handlers)."""
        server.add_generic_rpc_handlers((self.handler(),))

    # --- the methods ----------------------------------------------------------------------------
    async def GetCapabilities(self, request, context):
        return extensions.capabilities_message(self.core.capabilities())

    async def GetOutcome(self, request, context):
        job = _job_id(request, "")
        outcome = await self._run(self.core.get_outcome, job)
        return outcome.to_proto()

    async def CancelJob(self, request, context):
        job = _job_id(request, "")
        state = await self._run(self.core.cancel_job, job)
        return AgentExtensions_pb2.CancelResponse(code=int(state))

    async def WatchJobs(self, request, context):
        jobs = extensions.watch_jobs(request.jobs)
        subscription = await self._run(self.core.watch_jobs, jobs, caller_of(context))
        with_outcome = extensions.OUTCOME in self.core.capabilities()
        try:
            while not subscription.finished:
                job, state = await subscription.next_async()
                event = AgentExtensions_pb2.JobEvent(job=Common_pb2.JobId(uuid=job), code=int(state))
                if state is JobState.DONE and with_outcome:
                    outcome = await self._run(self.core.get_outcome, job)
                    event.outcome.CopyFrom(outcome.to_proto())
                yield event
        finally:
            subscription.cancel()

    # --- the handler ------------------------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        """Every method on raw bytes: bytes that do not parse get INVALID_ARGUMENT (as v1's
        AGT-ERR-1), a ProtocolError its status, HubClosed UNAVAILABLE; one log line per call."""
        handlers = {}
        for method in SERVICE.methods:
            behaviour = getattr(self, method.name)
            parse = _parser(method)
            if method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(self._stream(method.name, parse, behaviour))
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(self._unary(method.name, parse, behaviour))
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)

    async def _check(self, name: str, context) -> None:
        extension = METHOD_EXTENSION.get(name)
        if extension is not None and extension not in self.core.capabilities():
            error = extensions.not_offered(extension)
            await context.abort(error.code, error.message)

    def _unary(self, name: str, parse: Callable, behaviour):
        async def handle(data: bytes, context):
            start, code, job = time.perf_counter(), "OK", None
            try:
                await self._check(name, context)
                request = await _parsed(parse, data, context)
                job = _logged_job(request)
                try:
                    return (await behaviour(request, context)).SerializeToString()
                except ProtocolError as exc:
                    code = exc.code.name
                    await context.abort(exc.code, exc.message)
            except BaseException:
                code = code if code != "OK" else _status_name(context)
                raise
            finally:
                self.telemetry.rpc(name, code, time.perf_counter() - start, log=self.log, job=job)
        return handle

    def _stream(self, name: str, parse: Callable, behaviour):
        async def handle(data: bytes, context):
            start, code, events = time.perf_counter(), "OK", 0
            try:
                await self._check(name, context)
                request = await _parsed(parse, data, context)
                try:
                    async for event in behaviour(request, context):
                        events += 1
                        yield event.SerializeToString()
                except ProtocolError as exc:
                    code = exc.code.name
                    await context.abort(exc.code, exc.message)
                except HubClosed:
                    code = "UNAVAILABLE"
                    await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except BaseException:
                code = code if code != "OK" else _status_name(context)
                raise
            finally:
                self.telemetry.rpc(name, code, time.perf_counter() - start, log=self.log, events=events)
        return handle


def _parser(method):
    """The request message class of a method (its FromString parses the raw bytes)."""
    return message_factory.GetMessageClass(method.input_type)


async def _parsed(request_class, data: bytes, context):
    try:
        return request_class.FromString(data)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"request bytes do not parse as {request_class.DESCRIPTOR.name}: {exc}")


def _logged_job(request) -> str | None:
    value = getattr(request, "uuid", None) if isinstance(request, Common_pb2.JobId) else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return value if value is None or len(value) <= 64 else value[:61] + "..."


def _status_name(context) -> str:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - logging must not fail an RPC
        code = None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
