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
