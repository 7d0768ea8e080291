"""Build and run the gRPC server around a core: Agent, health, reflection, TLS, size limit, metrics.

The server is grpc's asyncio server on one event-loop thread: a call waiting for its request
message holds a coroutine, never a thread; the domain's blocking work runs on a bounded pool
of work threads (reference_agent.calls). Every service is registered through `build_server`,
which hardens it: unary requests read with a deadline, streams bounded and ended at stop."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from reference_agent import tls
from reference_agent.auth import TokenAuthInterceptor, load_tokens
from reference_agent.calls import (FLOOD, JANITOR_PERIOD, CallCounts, WorkPool, release_memory,
                                   with_request_deadline, work_threads_for_machine)
from reference_agent.config import AgentConfig, ConfigError, StateError, parse_listen
from reference_agent.domain import AgentCore
from reference_agent.ext_servicer import ExtensionServicer
from reference_agent.servicer import (SERVICE, AgentServicer, LoggedHealthServicer, LoggedReflectionServicer,
                                     RawAgentHandler)
from reference_agent.streams import StreamGate, gate_handler
from reference_agent.telemetry import Telemetry
from reference_agent.transport import connection_cap, raise_open_files_limit, server_options

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass(frozen=True)
class ServiceRegistration:
    """One service of the agent's server: `add(server)` registers its handlers the way generated
    code does (e.g. functools.partial(add_FooServicer_to_server, servicer)); `name` is the full
    service name reflection lists. Unless `hardened`, its handlers are hardened on the way in:
    unary requests are read with the request deadline, streaming methods are bounded
    (max_open_streams each) and end with UNAVAILABLE when the agent stops (AGT-EXT-8)."""

    name: str
    add: Callable[[object], None]
    hardened: bool = False


def agent_extensions(agent: "AgentServer") -> ServiceRegistration:
    """AgentExtensions (outcome, cancel, watch: PROTOCOL-EXT) over the agent's core, on its work pool."""
    servicer = ExtensionServicer(agent.core, agent.telemetry, log=agent.config.log_rpcs, work=agent.work)
    return ServiceRegistration(servicer.name, servicer.add_to)


class AgentServer:
    """A running reference agent: `start()` returns "HOST:PORT", `stop()` stops cleanly.

    `core_factory(config, telemetry)` builds the domain object (AgentCore or a subclass that
    overrides one behaviour); `servicer_factory(core)` builds the gRPC servicer. `extensions`:
    callables `f(agent_server) -> ServiceRegistration` for more services (grpc.aio servicers),
    called once the core exists. Usable as a context manager; `stop_jobs` on stop() ends running
    jobs instead of leaving them to adopt.
    """

    def __init__(self, config: AgentConfig,
                 core_factory: Callable[..., AgentCore] = AgentCore,
                 servicer_factory: Callable[[AgentCore], AgentServicer] = AgentServicer,
                 telemetry: Telemetry | None = None,
                 extensions: Sequence[Callable[["AgentServer"], ServiceRegistration]] = (agent_extensions,)):
        self.config = config.validate()
        self._tokens = load_tokens(config.auth_tokens) if config.auth_tokens else None  # ConfigError now
        self.telemetry = telemetry or Telemetry()
        self.core_factory = core_factory
        self.servicer_factory = servicer_factory
        self.extensions = tuple(extensions)
        self.core: AgentCore | None = None
        self.address: str | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.work = WorkPool(config.work_threads or work_threads_for_machine(os.cpu_count()), config.max_queued_calls)
        self.counts = CallCounts()
        self.telemetry.watch_server(self._server_counts)
        self.open_files: tuple[int, int] | None = None  # RLIMIT_NOFILE soft limit (before, after) start
        self.max_connections: int | None = None
        self.stopping: asyncio.Event | None = None  # set on the loop when stop() begins
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._gates: dict[str, StreamGate] = {}
        self._stopped = threading.Event()

    def start(self) -> str:
        host, port = parse_listen(self.config.listen)
        self.open_files = raise_open_files_limit()
        self.max_connections = connection_cap(self.config.max_connections, self.config.slots, self.work.threads)
        credentials = self._credentials()
        self.core = self.core_factory(self.config, self.telemetry)  # StateError: locked, journal lost
        try:
            self.core.start()  # JournalError: a row it cannot read
        except BaseException:
            self.core.close()
            raise
        self._start_loop()
        try:
            bound = self.on_loop(self._serve(f"{host}:{port}", credentials))
        except BaseException as exc:
            self._close_loop()
            self.core.close()
            if isinstance(exc, (RuntimeError, ConfigError)):
                raise ConfigError(f"--listen {self.config.listen!r}: cannot bind ({exc})") from None
            raise
        self.port = bound
        self.address = f"{host}:{bound}"
        if self.config.metrics_port is not None:
            try:
                self.metrics_port = self.telemetry.serve_metrics(self.config.metrics_port, self.config.metrics_host)
            except OSError as exc:
                self.stop(grace=0)
                raise ConfigError(f"--metrics-port {self.config.metrics_port}: cannot serve ({exc})") from None
        self.telemetry.log("start", address=self.address, slots=self.config.slots,
                           source=self.core.source.describe(), state_dir=str(self.core.root),
                           interpreters=[f"{i.version}={i.path}" for i in self.core.interpreters.known()],  # probing may go on
                           metrics_port=self.metrics_port, work_threads=self.work.threads,
                           max_connections=self.max_connections, open_files=self.open_files[1])
        return self.address

    # --- the event loop -------------------------------------------------------------------------
    def _start_loop(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="agent-aio", daemon=True)
        self._loop_thread.start()

    def on_loop(self, coroutine, timeout: float | None = 60.0):
        """Run a coroutine on the server's loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def _close_loop(self) -> None:
        if self.loop is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(10)
        if not self.loop.is_running():
            self.loop.close()

    async def _serve(self, target: str, credentials: grpc.ServerCredentials | None) -> int:
        self.stopping = asyncio.Event()
        self._server = self.build_server()
        bound = (self._server.add_secure_port(target, credentials) if credentials
                 else self._server.add_insecure_port(target))
        if not bound:
            raise ConfigError("port 0 returned")
        await self._server.start()
        self._janitor_task = asyncio.get_running_loop().create_task(self._janitor(), name="agent-janitor")
        for name in ("", SERVICE.full_name, *(r.name for r in self._registered)):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return bound

    async def _janitor(self) -> None:
        """After a flood of calls (FLOOD answered within a period, e.g. 1,000 half-open calls
        ended or refused) followed by a quiet period, give the flood's memory back to the system:
        without it the resident size stayed at the flood's high mark (48 -> 71 MB)."""
        last, flooded = self.telemetry.answered, False
        while True:
            await asyncio.sleep(JANITOR_PERIOD)
            now = self.telemetry.answered
            busy = now - last >= FLOOD or self.counts.awaiting_message >= FLOOD
            if flooded and not busy:
                await asyncio.get_running_loop().run_in_executor(None, release_memory)
            flooded, last = busy, now

    # --- the services ---------------------------------------------------------------------------
    def build_server(self) -> grpc.aio.Server:
        """The grpc.aio server with every service of `services()` (and reflection listing them)
        registered and hardened; called on the server's loop. Broken agents override it."""
        c = self.config
        server = grpc.aio.server(interceptors=self._interceptors(), maximum_concurrent_rpcs=c.max_calls,
                                 options=server_options(c, self.max_connections))
        self._registered = list(self.services())
        names = (*(r.name for r in self._registered), reflection.SERVICE_NAME)
        for registration in (*self._registered, self.reflection_service(names)):
            registration.add(server if registration.hardened else _Hardening(server, self))
        return server

    def services(self) -> list[ServiceRegistration]:
        """The Agent service, health, and the extensions: override to add services."""
        raw = self.agent_handler(self.servicer_factory(self.core))

        def add_agent(server) -> None:
            server.add_generic_rpc_handlers((raw,))
            server.add_registered_method_handlers(SERVICE.full_name, raw.by_method_name())  # as generated code does

        self._health = LoggedHealthServicer(self.telemetry) if self.config.log_rpcs else health.aio.HealthServicer()
        return [ServiceRegistration(SERVICE.full_name, add_agent, hardened=True),
                ServiceRegistration(HEALTH_SERVICE, functools.partial(health_pb2_grpc.add_HealthServicer_to_server,
                                                                      self._health)),
                *(extension(self) for extension in self.extensions)]

    def agent_handler(self, servicer: AgentServicer, handler_class: type[RawAgentHandler] = RawAgentHandler):
        """The Agent service's handler over `servicer`, on this server's work pool and deadline."""
        # Polls answered on the event loop: the reference agent's own hooks only (a broken agent's may block)
        inline = (type(self.core) is AgentCore and type(servicer) is AgentServicer
                  and handler_class is RawAgentHandler)
        return handler_class(servicer, self.telemetry, log=self.config.log_rpcs, work=self.work,
                             request_timeout=self.config.request_timeout, counts=self.counts, inline_polls=inline)

    def reflection_service(self, names) -> ServiceRegistration:
        reflector = (LoggedReflectionServicer(names, self.telemetry) if self.config.log_rpcs
                     else reflection.aio.ReflectionServicer(names))
        return ServiceRegistration(reflection.SERVICE_NAME, functools.partial(
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server, reflector))

    def harden(self, method: str, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
        """`handler` of `method` with the request deadline and, when streaming, its gate."""
        if handler is None:
            return None
        streaming = handler.request_streaming or handler.response_streaming
        if streaming:
            gate = self._gates.get(method)
            if gate is None:
                what = method.rsplit("/", 1)[-1]
                gate = self._gates.setdefault(method, StreamGate(self.config.max_open_streams, what, self.stopping))
            handler = gate_handler(handler, gate)
        return with_request_deadline(handler, self.config.request_timeout, self.counts)

    def _server_counts(self) -> dict[str, int]:
        return {"awaiting_message": self.counts.awaiting_message, "half_open_ended": self.counts.half_open_ended,
                "work_pending": self.work.pending, "work_refused": self.work.refused,
                "open_streams": sum(g.open for g in self._gates.values())}

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        chosen: list[grpc.aio.ServerInterceptor] = []
        if self._tokens:  # first: a refused call does no other work
            chosen.append(TokenAuthInterceptor(self._tokens, self.telemetry))
        return chosen  # RPC logging is in the handlers themselves: no interceptor on the hot path

    def _credentials(self) -> grpc.ServerCredentials | None:
        c = self.config  # ConfigError names a bad file (reference_agent.tls), before the core starts
        return tls.server_credentials(c.tls_cert, c.tls_key, c.tls_client_ca, warn=self.telemetry.log)

    # --- stopping -------------------------------------------------------------------------------
    async def _stop_serving(self, grace: float | None) -> None:
        if self._health is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._health.enter_graceful_shutdown(), 1.0)
            await asyncio.sleep(0.02)  # Watch streams send NOT_SERVING before they end
        self.stopping.set()  # open streams end with UNAVAILABLE
        if getattr(self, "_janitor_task", None) is not None:
            self._janitor_task.cancel()
        await self._server.stop(grace)
        self.counts.stop()

    def stop(self, grace: float | None = 2.0, stop_jobs: bool | None = None) -> None:
        """Stop accepting, let in-flight RPCs finish (grace seconds), end open streams with
        UNAVAILABLE, then close the core."""
        if self._stopped.is_set():
            return
        if self._server is not None and self.loop is not None and self.loop.is_running():
            self.on_loop(self._stop_serving(grace), timeout=(grace or 0) + 30)
        if self.core is not None:
            self.core.close(stop_jobs=stop_jobs)
        self._close_loop()
        self.work.shutdown(wait=False)
        self.telemetry.log("stop", address=self.address)
        self.telemetry.close()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has finished; True when it has."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "AgentServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(grace=0.5, stop_jobs=True)


class _Hardening:
    """Stands in for the server while a service registers: passes its handlers on hardened."""

    def __init__(self, server: grpc.aio.Server, agent: AgentServer):
        self.server, self.agent = server, agent

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.server.add_registered_method_handlers(
            service, {name: self.agent.harden(f"/{service}/{name}", h) for name, h in handlers.items()})

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.server.add_generic_rpc_handlers(tuple(_HardenedGeneric(h, self.agent) for h in handlers))


class _HardenedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, agent: AgentServer):
        self.inner, self.agent = inner, agent
        self._known: dict[str, grpc.RpcMethodHandler] = {}  # only methods the inner handler serves

    def service(self, handler_call_details):
        method = handler_call_details.method
        known = self._known.get(method)
        if known is None:
            found = self.inner.service(handler_call_details)
            if found is None:
                return None
            known = self._known.setdefault(method, self.agent.harden(method, found))
        return known


def serve_until_signalled(server: AgentServer, prog: str, stop_jobs: bool | None = None) -> int:
    """Start `server`, print `listening on HOST:PORT` as the first stdout line, serve until
    SIGTERM or SIGINT, then stop cleanly. Raises ConfigError for the caller's usage message;
    a StateError (state directory locked, journal lost or unreadable) is printed and gives exit
    status 2; an OSError (port in use, unreadable certificate) is printed and gives status 1."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        address = server.start()
    except StateError as exc:  # the directory, not the command line: the message alone, status 2
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"listening on {address}", flush=True)
    containment = getattr(server.core, "containment", None)
    if containment is not None:  # which containment is in use: cgroups, or sessions as the fallback
        print(f"{prog}: jobs contained by {containment.describe()}", file=sys.stderr, flush=True)
    while not stop.wait(3600):
        pass
    server.stop(stop_jobs=stop_jobs)
    return 0
