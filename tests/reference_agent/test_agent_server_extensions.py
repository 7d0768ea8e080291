"""AgentServer's extension surface (issue 18.1, for issue 21): a grpc.aio service added with
`extensions=[...]` is registered through build_server and hardened like health: listed by
reflection and SERVING in health, its unary requests read with --request-timeout, its streams
ended with UNAVAILABLE when the agent stops (AGT-EXT-8), behind --auth-tokens."""
from __future__ import annotations

import asyncio
import functools
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos import AgentExtensions_pb2, AgentExtensions_pb2_grpc, Common_pb2
from reference_agent.server import AgentServer, ServiceRegistration

EXT = AgentExtensions_pb2.DESCRIPTOR.services_by_name["AgentExtensions"].full_name
TOKEN = "ext-test-token"


class _Toy(AgentExtensions_pb2_grpc.AgentExtensionsServicer):
    """GetCapabilities answers; WatchJobs sends one event and then waits for ever."""

    def __init__(self, server: AgentServer):
        self.server = server
        self.watching = threading.Event()

    async def GetCapabilities(self, request, context):
        return AgentExtensions_pb2.Capabilities(extensions=["watch"])

    async def WatchJobs(self, request, context):
        yield AgentExtensions_pb2.JobEvent(job=request.jobs[0], code=0)
        self.watching.set()
        await asyncio.Event().wait()


class _ExtServer(AgentServer):
    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry=telemetry, extensions=[self._toy])

    def _toy(self, server: AgentServer) -> ServiceRegistration:
        assert server.core is not None  # called once the core exists
        self.toy = _Toy(server)
        return ServiceRegistration(EXT, functools.partial(AgentExtensions_pb2_grpc.add_AgentExtensionsServicer_to_server,
                                                          self.toy))


@pytest.fixture
def start_agent(make_agent):
    return lambda **overrides: make_agent(**overrides)


@pytest.fixture
def insecure_channel():
    opened: list[grpc.Channel] = []

    def _open(address: str) -> grpc.Channel:
        opened.append(grpc.insecure_channel(address))
        return opened[-1]

    yield _open
    for channel in opened:
        channel.close()


def _watch(channel, metadata=None):
    request = AgentExtensions_pb2.WatchRequest(jobs=[Common_pb2.JobId(uuid="00000000-0000-0000-0000-000000000001")])
    return AgentExtensions_pb2_grpc.AgentExtensionsStub(channel).WatchJobs(request, timeout=60, metadata=metadata)


def test_an_extension_is_served_listed_and_healthy(start_agent, insecure_channel):
    agent = start_agent(server_class=_ExtServer)
    channel = insecure_channel(agent.address)
    stub = AgentExtensions_pb2_grpc.AgentExtensionsStub(channel)
    assert list(stub.GetCapabilities(AgentExtensions_pb2.CapabilitiesRequest(), timeout=5).extensions) == ["watch"]
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=EXT), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    assert EXT in [s.name for s in next(listing).list_services_response.service]


def test_an_extension_call_without_its_message_is_ended(start_agent):
    agent = start_agent(server_class=_ExtServer, request_timeout=0.3)
    with grpc.insecure_channel(agent.address) as channel:
        stop = threading.Event()

        def never():
            stop.wait(30)
            return
            yield  # pragma: no cover

        call = channel.stream_unary(f"/{EXT}/GetCapabilities").future(never(), timeout=30)
        try:
            error = call.exception(timeout=15)
        finally:
            stop.set()
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "no request message" in error.details()


def test_an_extension_stream_ends_unavailable_when_the_agent_stops(start_agent, insecure_channel):
    agent = start_agent(server_class=_ExtServer)
    events = _watch(insecure_channel(agent.address))
    assert next(events).job.uuid == "00000000-0000-0000-0000-000000000001"
    assert agent.server.toy.watching.wait(5)
    start = time.monotonic()
    agent.server.stop(grace=30, stop_jobs=True)
    assert time.monotonic() - start < 20
    with pytest.raises(grpc.RpcError) as ended:
        next(events)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE


def test_extension_streams_are_bounded(start_agent, insecure_channel):
    agent = start_agent(server_class=_ExtServer, max_open_streams=2)
    channel = insecure_channel(agent.address)
    streams = [_watch(channel) for _ in range(3)]
    try:
        outcomes = []
        for stream in streams:
            try:
                outcomes.append(next(stream).job.uuid[:8])
            except grpc.RpcError as exc:
                outcomes.append(exc.code())
        assert outcomes.count("00000000") == 2 and outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 1
    finally:
        for stream in streams:
            stream.cancel()


def test_an_extension_is_behind_the_token(start_agent, insecure_channel, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    agent = start_agent(server_class=_ExtServer, auth_tokens=str(tokens))
    stub = AgentExtensions_pb2_grpc.AgentExtensionsStub(insecure_channel(agent.address))
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetCapabilities(AgentExtensions_pb2.CapabilitiesRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    answer = stub.GetCapabilities(AgentExtensions_pb2.CapabilitiesRequest(), timeout=5,
                                  metadata=(("authorization", f"Bearer {TOKEN}"),))
    assert list(answer.extensions) == ["watch"]
