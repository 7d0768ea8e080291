"""Fixtures for the fakes' tests: a raw-bytes caller, fresh UUIDs, a client on an address."""
from __future__ import annotations

import uuid

import grpc
import pytest

from fakes.agent import full_method_name
from protos.client import AgentClient


class Raw:
    """Calls an agent at `address` with hand-made bytes and returns the raw response bytes."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address)

    def call(self, method: str, payload: bytes, timeout: float = 10.0) -> bytes:
        return self.channel.unary_unary(full_method_name(method))(payload, timeout=timeout)

    def status(self, method: str, payload: bytes) -> grpc.StatusCode:
        """The status code of a call (OK when it succeeds)."""
        try:
            self.call(method, payload)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def new_uuid():
    return lambda: str(uuid.uuid4())


@pytest.fixture
def connect():
    """connect(address) -> AgentClient with a 10 s timeout; channels are closed at teardown."""
    channels = []

    def _connect(address: str) -> AgentClient:
        channel = grpc.insecure_channel(address)
        channels.append(channel)
        return AgentClient(channel, timeout=10.0)

    yield _connect
    for channel in channels:
        channel.close()


@pytest.fixture
def raw():
    """raw(address) -> Raw caller; channels are closed at teardown."""
    made = []

    def _raw(address: str) -> Raw:
        made.append(Raw(address))
        return made[-1]

    yield _raw
    for r in made:
        r.close()


class Running:
    """A started agent (broken or reference) in this process, with its source directory."""

    def __init__(self, server, source):
        self.server, self.source, self.address = server, source, server.address
        self.channel = grpc.insecure_channel(self.address)
        self.client = AgentClient(self.channel, timeout=10.0)

    def put(self, data: bytes, file: str | None = None) -> str:
        file = file or str(uuid.uuid4())
        (self.source / file.lower()).write_bytes(data)
        return file

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace=0, stop_jobs=True)


@pytest.fixture
def start_agent(tmp_path):
    """start_agent(name_or_None, slots=2, state_dir=None, pythons=()) -> Running: a broken agent from
    fakes.broken.CATALOGUE, or the reference agent for None, on a loopback port."""
    started = []

    def _start(name=None, slots=2, state_dir=None, pythons=()):
        from fakes.broken import CATALOGUE, build_server
        from reference_agent.config import AgentConfig
        from reference_agent.server import AgentServer
        from reference_agent.telemetry import Telemetry

        source = tmp_path / "source"
        source.mkdir(exist_ok=True)
        config = AgentConfig(listen="127.0.0.1:0", source=str(source), slots=slots, discover_path=False,
                             pythons=tuple(pythons),
                             state_dir=str(state_dir or tmp_path / f"state-{len(started)}"), log_rpcs=False)
        server = (AgentServer(config, telemetry=Telemetry(stream=None)) if name is None
                  else build_server(CATALOGUE[name], config))
        server.start()
        started.append(Running(server, source))
        return started[-1]

    yield _start
    for running in reversed(started):
        running.close()
