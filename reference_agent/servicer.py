"""The thin gRPC adapter: parse and validate, call the domain, map errors to status codes."""
from __future__ import annotations

import time
from contextlib import contextmanager

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from protos import AgentService_pb2, AgentService_pb2_grpc, Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.errors import ProtocolError

SERVICE = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
_REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
HEALTH_CHECK = f"/{_HEALTH.full_name}/{_HEALTH.methods_by_name['Check'].name}"
HEALTH_WATCH = f"/{_HEALTH.full_name}/{_HEALTH.methods_by_name['Watch'].name}"
REFLECTION_INFO = f"/{_REFLECTION.full_name}/{_REFLECTION.methods_by_name['ServerReflectionInfo'].name}"


@contextmanager
def protocol_errors(context):
    """The one place where a domain error becomes a gRPC status (context.abort raises)."""
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
    status = context.code() if hasattr(context, "code") else None
    if isinstance(status, grpc.StatusCode):
        return status.name
    return "UNKNOWN" if failed else "OK"


class RawAgentHandler(grpc.GenericRpcHandler):
    """Serves the servicer's methods on raw bytes, so that bytes which do not parse get
    INVALID_ARGUMENT (AGT-ERR-1) instead of grpcio's generic INTERNAL, and logs one line per
    RPC with its status code. Method names come from the service descriptor."""

    def __init__(self, servicer: AgentServicer, telemetry, log: bool = True):
        self.telemetry = telemetry
        self.log = log
        self._handlers = {}
        for method in SERVICE.methods:
            request_class = message_factory.GetMessageClass(method.input_type)
            behaviour = getattr(servicer, method.name)
            self._handlers[f"/{SERVICE.full_name}/{method.name}"] = grpc.unary_unary_rpc_method_handler(
                self._wrap(method.name, request_class, behaviour))

    def service(self, handler_call_details):
        return self._handlers.get(handler_call_details.method)

    def by_method_name(self) -> dict:
        """{"RunJob": handler, ...} for grpc's registered-method fast path."""
        return {path.rsplit("/", 1)[1]: handler for path, handler in self._handlers.items()}

    def _wrap(self, name, request_class, behaviour):
        telemetry, log = self.telemetry, self.log

        def handle(data: bytes, context):
            start = time.perf_counter()
            code, job = "OK", None
            try:
                try:
                    request = request_class.FromString(data)
                except DecodeError as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"request bytes do not parse as {request_class.DESCRIPTOR.name}: {exc}")
                job = _job_of(request)
                return behaviour(request, context).SerializeToString()
            except BaseException:
                status = context.code() if hasattr(context, "code") else None
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                telemetry.rpc(name, code, time.perf_counter() - start, log=log, job=job, bytes=len(data))

        return handle


class LoggedHealthServicer(health.HealthServicer):
    """The standard health service, logging each call with its status code (no interceptor:
    an interceptor would tax every Agent RPC as well)."""

    def __init__(self, telemetry, **kwargs):
        super().__init__(**kwargs)
        self.telemetry = telemetry

    def Check(self, request, context):
        start, failed = time.perf_counter(), True
        try:
            response = super().Check(request, context)
            failed = False
            return response
        finally:
            self.telemetry.rpc(HEALTH_CHECK, _code_name(context, failed), time.perf_counter() - start)

    def Watch(self, request, context, send_response_callback=None):
        self.telemetry.rpc(HEALTH_WATCH, "STREAM", 0.0)
        return super().Watch(request, context, send_response_callback)


class LoggedReflectionServicer(reflection.ReflectionServicer):
    """Server reflection with one log line per stream when it starts."""

    def __init__(self, service_names, telemetry, **kwargs):
        super().__init__(service_names, **kwargs)
        self.telemetry = telemetry

    def ServerReflectionInfo(self, request_iterator, context):
        self.telemetry.rpc(REFLECTION_INFO, "STREAM", 0.0)
        return super().ServerReflectionInfo(request_iterator, context)
