"""Fixtures for the reliability and security tests: in-process agents on loopback, certificates."""
from __future__ import annotations

import grpc
import pytest

from reliability_helpers import Agent, make_certificates


@pytest.fixture
def start_agent(tmp_path):
    """start_agent(server_class=AgentServer, **AgentConfig overrides) -> Agent on 127.0.0.1:0;
    stopped (jobs too) at teardown."""
    made: list[Agent] = []

    def _start(**overrides) -> Agent:
        made.append(Agent.start(tmp_path, len(made), **overrides))
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
