"""Fixtures for the reliability and security tests: in-process agents on loopback, certificates."""
from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from reliability_helpers import Agent, make_certificates
from reference_agent.config import AgentConfig
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry


@pytest.fixture
def start_agent(tmp_path):
    """start_agent(server_class=AgentServer, **AgentConfig overrides) -> Agent on 127.0.0.1:0;
    stopped (jobs too) at teardown."""
    made: list[Agent] = []

    def _start(**overrides) -> Agent:
        n = len(made)
        source = Path(overrides.pop("source", tmp_path / f"source{n}"))
        source.mkdir(parents=True, exist_ok=True)
        state = Path(overrides.pop("state_dir", tmp_path / f"state{n}"))
        settings = dict(listen="127.0.0.1:0", source=str(source), state_dir=str(state), slots=2,
                        discover_path=False, log_rpcs=False)
        server_class = overrides.pop("server_class", AgentServer)
        settings.update(overrides)
        server = server_class(AgentConfig(**settings), telemetry=Telemetry(stream=None))
        server.start()
        made.append(Agent(server, source, state))
        return made[-1]

    yield _start
    for agent in made:
        agent.close()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """PEM files of a test CA, a server cert for 127.0.0.1, a client cert, and a rogue CA's client."""
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def insecure_channel():
    opened: list[grpc.Channel] = []

    def _open(address: str) -> grpc.Channel:
        opened.append(grpc.insecure_channel(address))
        return opened[-1]

    yield _open
    for channel in opened:
        channel.close()
