"""FakeAgent: the thin gRPC servicer over a FakeBackend, and the ways to serve it."""
from __future__ import annotations

import contextlib
import time
from concurrent import futures
from typing import Callable, Iterator, Sequence

import grpc
from google.protobuf import message_factory

from fakes.backend import Call, FakeBackend
from protos import (AgentExtensions_pb2_grpc, AgentService_pb2, AgentService_pb2_grpc, Common_pb2, RunJob_pb2,
                    StageInFile_pb2, validation)
from protos.errors import ProtocolError

SERVICE = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
METHODS = {m.name: m for m in SERVICE.methods}


def full_method_name(name: str) -> str:
    """'/Agent/RunJob' for 'RunJob', from the descriptor (never retyped)."""
    return f"/{SERVICE.full_name}/{METHODS[name].name}"


class _Abort(Exception):
    """Internal: carries a non-OK answer from a step of a call to the one place that sends it."""

    def __init__(self, code: grpc.StatusCode, details: str, injected: bool = False):
        super().__init__(details)
        self.code, self.details, self.injected = code, details, injected


class FakeAgent(AgentService_pb2_grpc.AgentServicer):
    """An Agent servicer that follows PROTOCOL-V1 on its surface and runs nothing.

    Each RPC is: injected faults and latency, validation with protos.validation
    (INVALID_ARGUMENT texts from protos.errors), one call into `backend`, the response. Every
    call is recorded in backend.calls with the status it got. Keyword arguments build the
    backend (source, python_versions, progression, clock, sleep) when none is given.
    Serve it with serve() (real loopback port), testing_server() (grpcio-testing), or the
    pytest fixture `fake_agent`. Subclasses may override one step (validate_stage,
    validate_run, stage_in, run_job, serialize_response) to make a broken agent.
    """

    def __init__(self, backend: FakeBackend | None = None, **config):
        if backend is not None and config:
            raise TypeError("give either a backend or backend keyword arguments, not both")
        self.backend = backend if backend is not None else FakeBackend(**config)
        self.address: str | None = None

    # shortcuts to the state that tests use most
    @property
    def source(self):
        return self.backend.source

    @property
    def calls(self) -> list[Call]:
        return self.backend.calls

    def reset(self) -> None:
        self.backend.reset()

    # --- RPCs -------------------------------------------------------------------------------------

    def StageInFiles(self, request, context):
        return self.handle("StageInFiles", request, context, self.stage_in)

    def RunJob(self, request, context):
        return self.handle("RunJob", request, context, self.run_job)

    def stage_in(self, request) -> StageInFile_pb2.StageInFilesResponse:
        req = self.validate_stage(request)
        staged = self.backend.stage_in(req.job, req.files)
        return StageInFile_pb2.StageInFilesResponse(
            success_files=[StageInFile_pb2.StagedFile(file=Common_pb2.FileId(uuid=u)) for u in staged])

    def run_job(self, request) -> RunJob_pb2.RunJobResponse:
        state = self.backend.run_job(self.validate_run(request))
        return RunJob_pb2.RunJobResponse(code=int(state))

    def validate_stage(self, request) -> validation.StageRequest:
        return validation.validate_stage_request(request)

    def validate_run(self, request) -> validation.RunRequest:
        return validation.validate_run_request(request)

    # --- the one place where faults, recording and status codes happen ---------------------------

    def prelude(self, method: str):
        """What happens before a call acts: the disconnected switch, latency, an injected fault that
        fires before acting (raised as _Abort). Returns the fault that fires later, if any."""
        backend = self.backend
        if not backend.connected:
            raise _Abort(grpc.StatusCode.UNAVAILABLE, "fake agent is disconnected (connected=False)", True)
        delay = backend.faults.latency(method)
        if delay:
            backend.sleep(delay)
        fault = backend.faults.take(method)
        if fault is not None and not fault.after_apply and fault.after_events is None:
            raise _Abort(fault.code, fault.details, True)
        return fault

    @staticmethod
    def abort_with(code: grpc.StatusCode, details: str, injected: bool = True) -> Exception:
        """The exception that ends a call with `code` through handle() or abort_stream()."""
        return _Abort(code, details, injected)

    def record_call(self, method: str, request, code: grpc.StatusCode, details: str, response, context,
                    injected: bool = False) -> None:
        self.backend.record(Call(method, _copy(request), code, details, _copy(response), self.backend.clock(),
                                 injected, _metadata(context)))

    def after_event(self, method: str, sent: int) -> tuple[grpc.StatusCode, str] | None:
        """Hook: called after a stream sent its `sent`-th event; a (code, details) ends it there.
        The plain fake never does (FaultPlan.break_stream works without it); legal mode does."""
        return None

    def abort_stream(self, method: str, request, exc: Exception, sent: tuple, context) -> None:
        """End a streaming call that raised `exc`: an _Abort is recorded and sent as its status."""
        if isinstance(exc, _Abort):
            self.record_call(method, request, exc.code, exc.details, sent, context, exc.injected)
            context.abort(exc.code, exc.details)

    def handle(self, method: str, request, context, step: Callable):
        """One unary call: prelude, step(request), a fault that fires after acting, recording."""
        response, fault = None, None
        try:
            fault = self.prelude(method)
            try:
                response = step(request)
            except ProtocolError as exc:
                raise _Abort(exc.code, exc.message) from None
            if fault is not None and not (fault.slow and not _outwait(context, fault.cap)):
                raise _Abort(fault.code, fault.details, True)
        except _Abort as abort:
            self.record_call(method, request, abort.code, abort.details, response, context, abort.injected)
            context.abort(abort.code, abort.details)
            raise  # context.abort raises; this line is never reached with grpc or grpc_testing
        self.record_call(method, request, grpc.StatusCode.OK, "", response, context)
        return response


    # --- serving ------------------------------------------------------------------------------

    def serialize_response(self, method: str, message) -> bytes:
        """Bytes on the wire for a response; SerializeToString refuses a missing required field."""
        return message.SerializeToString()

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        handlers = {}
        for name, desc in METHODS.items():
            request_class = message_factory.GetMessageClass(desc.input_type)
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                getattr(self, name), request_deserializer=request_class.FromString,
                response_serializer=lambda message, _name=name: self.serialize_response(_name, message))
        return handlers

    def add_to_server(self, server: grpc.Server) -> None:
        """The Agent service, and AgentExtensions (which answers as the backend's `extensions` say)."""
        from fakes.ext import FakeExtensions

        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name,
                                                                            self.method_handlers()),))
        AgentExtensions_pb2_grpc.add_AgentExtensionsServicer_to_server(FakeExtensions(self), server)

    def serve(self, host: str = "127.0.0.1", port: int = 0, **kwargs) -> contextlib.AbstractContextManager[str]:
        """Context manager: serve on a real port (0 = any free one), yield 'host:port'."""
        return serve(self, host, port, **kwargs)


def _outwait(context, cap: float) -> bool:
    """Hold a call until its caller's deadline has passed (True) or `cap` seconds (False: the caller
    is still waiting, so the answer is merely late). Real time: the caller's deadline is real."""
    end = time.monotonic() + cap
    while context.is_active():
        if time.monotonic() >= end:
            return False
        time.sleep(0.002)
    return True


def _metadata(context) -> tuple[tuple[str, str], ...]:
    try:
        return tuple((k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str))
    except Exception:  # noqa: BLE001 - a context without metadata (a hand-made one in a test)
        return ()


def _copy(message):
    if message is None:
        return None
    if isinstance(message, tuple):   # the events a stream sent
        return tuple(_copy(m) for m in message)
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


@contextlib.contextmanager
def serve(agent: FakeAgent, host: str = "127.0.0.1", port: int = 0, *, max_workers: int = 8,
          options: Sequence[tuple[str, object]] = (), credentials: grpc.ServerCredentials | None = None) -> Iterator[str]:
    """Serve `agent` on host:port (port 0 = any free port) until the block ends; yield the address.
    With `credentials` (grpc.ssl_server_credentials) the port speaks TLS, to test a client's TLS set-up."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port!r}")
    # without so_reuseport=0 a second server could silently share a port that is already in use
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         options=[("grpc.so_reuseport", 0), *options])
    agent.add_to_server(server)
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    try:
        bound = (server.add_secure_port(f"{shown}:{port}", credentials) if credentials is not None
                 else server.add_insecure_port(f"{shown}:{port}"))
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {shown}:{port}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen on {shown}:{port}")
    server.start()
    address = f"{shown}:{bound}"
    previous, agent.address = agent.address, address
    try:
        yield address
    finally:
        agent.address = previous
        server.stop(grace=None).wait()


def testing_server(agent: FakeAgent, time=None):
    """A grpc_testing server over `agent` and its AgentExtensions (strict real time unless a
    grpc_testing time is given).

    Invoke with server.invoke_unary_unary(METHODS['RunJob'], (), request, None).termination()."""
    import grpc_testing

    from fakes.ext import EXT_SERVICE, FakeExtensions

    return grpc_testing.server_from_dictionary({SERVICE: agent, EXT_SERVICE: FakeExtensions(agent)},
                                               time or grpc_testing.strict_real_time())
