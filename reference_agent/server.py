"""Build and run the gRPC server around a core: Agent, health, reflection, TLS, size limit, metrics."""
from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from reference_agent import tls
from reference_agent.auth import TokenAuthInterceptor, load_tokens
from reference_agent.config import AgentConfig, ConfigError, StateError, parse_listen
from reference_agent.domain import AgentCore
from reference_agent.servicer import (SERVICE, AgentServicer, LoggedHealthServicer, LoggedReflectionServicer,
                                     RawAgentHandler)
from reference_agent.streams import StreamGate, stream_limit
from reference_agent.telemetry import Telemetry

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class AgentServer:
    """A running reference agent: `start()` returns "HOST:PORT", `stop()` stops cleanly.

    `core_factory(config, telemetry)` builds the domain object (AgentCore or a subclass that
    overrides one behaviour); `servicer_factory(core)` builds the gRPC servicer. Usable as a
    context manager; `stop_jobs` on stop() ends running jobs instead of leaving them to adopt.
    """

    def __init__(self, config: AgentConfig,
                 core_factory: Callable[..., AgentCore] = AgentCore,
                 servicer_factory: Callable[[AgentCore], AgentServicer] = AgentServicer,
                 telemetry: Telemetry | None = None):
        self.config = config.validate()
        self._tokens = load_tokens(config.auth_tokens) if config.auth_tokens else None  # ConfigError now
        self.telemetry = telemetry or Telemetry()
        self.core_factory = core_factory
        self.servicer_factory = servicer_factory
        self.core: AgentCore | None = None
        self.address: str | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.Server | None = None
        self._health: health.HealthServicer | None = None
        self._stopped = threading.Event()

    def start(self) -> str:
        host, port = parse_listen(self.config.listen)
        credentials = self._credentials()
        self.core = self.core_factory(self.config, self.telemetry)  # StateError: locked, journal lost
        try:
            self.core.start()  # JournalError: a row it cannot read
        except BaseException:
            self.core.close()
            raise
        try:
            self._server = self.build_server()
            target = f"{host}:{port}"
            bound = (self._server.add_secure_port(target, credentials) if credentials
                     else self._server.add_insecure_port(target))
        except RuntimeError as exc:
            self.core.close()
            raise ConfigError(f"--listen {self.config.listen!r}: cannot bind ({exc})") from None
        if not bound:
            self.core.close()
            raise ConfigError(f"--listen {self.config.listen!r}: cannot bind")
        self._server.start()
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
                           interpreters=[f"{i.version}={i.path}" for i in self.core.interpreters.available()],
                           metrics_port=self.metrics_port)
        return self.address

    def build_server(self) -> grpc.Server:
        limit = self.config.max_request_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.rpc_threads, thread_name_prefix="agent-rpc"),
            interceptors=self._interceptors(),
            options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)])
        servicer = self.servicer_factory(self.core)
        raw = RawAgentHandler(servicer, self.telemetry, log=self.config.log_rpcs)
        server.add_generic_rpc_handlers((raw,))
        server.add_registered_method_handlers(SERVICE.full_name, raw.by_method_name())  # as generated code does
        logged = self.config.log_rpcs
        # Blocking Watch streams, gated like reflection: grpc_health's non-blocking Watch sends
        # under its lock and deadlocked stop() when a client cancelled a Watch at that moment.
        self._health = (LoggedHealthServicer(self.telemetry, experimental_non_blocking=False) if logged
                        else health.HealthServicer(experimental_non_blocking=False))
        watch_gate = StreamGate(stream_limit(self.config.rpc_threads), "health Watch")
        self._health.Watch = watch_gate.wrap(self._health.Watch)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in ("", SERVICE.full_name):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        names = (SERVICE.full_name, HEALTH_SERVICE, reflection.SERVICE_NAME)
        reflector = LoggedReflectionServicer(names, self.telemetry) if logged else reflection.ReflectionServicer(names)
        gate = StreamGate(stream_limit(self.config.rpc_threads), "server reflection")  # idle streams hold threads
        reflector.ServerReflectionInfo = gate.wrap(reflector.ServerReflectionInfo)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflector, server)
        return server

    def _interceptors(self) -> list[grpc.ServerInterceptor]:
        chosen: list[grpc.ServerInterceptor] = []
        if self._tokens:  # first: a refused call does no other work
            chosen.append(TokenAuthInterceptor(self._tokens, self.telemetry))
        return chosen  # RPC logging is in the handlers themselves: no interceptor on the hot path

    def _credentials(self) -> grpc.ServerCredentials | None:
        c = self.config  # ConfigError names a bad file (reference_agent.tls), before the core starts
        return tls.server_credentials(c.tls_cert, c.tls_key, c.tls_client_ca, warn=self.telemetry.log)

    def stop(self, grace: float | None = 2.0, stop_jobs: bool | None = None) -> None:
        """Stop accepting, let in-flight RPCs finish (grace seconds), then close the core."""
        if self._stopped.is_set():
            return
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait()
        if self.core is not None:
            self.core.close(stop_jobs=stop_jobs)
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
