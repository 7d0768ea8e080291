"""Issue 11 item 10: idle server-reflection streams cannot take every RPC thread."""
from __future__ import annotations

import queue
import time

import grpc
import pytest

from protos.client import AgentClient
from reference_agent.servicer import REFLECTION_INFO
from reference_agent.streams import StreamGate, stream_limit
from shared_helpers import new_id


def _idle_requests(stop: queue.Queue):
    """A request stream that sends nothing until `stop` gets an item."""
    stop.get()
    return
    yield  # pragma: no cover - a generator that yields nothing


def test_twenty_idle_reflection_streams_leave_run_job_answering(start_agent, insecure_channel):
    agent = start_agent()
    channel = insecure_channel(agent.address)
    open_call = channel.stream_stream(REFLECTION_INFO)
    stops, calls = [], []
    try:
        for _ in range(20):
            stops.append(queue.Queue())
            calls.append(open_call(_idle_requests(stops[-1]), timeout=60))
        client = AgentClient(channel, timeout=5.0)
        entry = agent.put("print('still served')\n")
        job = new_id()
        assert client.stage_in(job, [entry]) == [entry]  # DEADLINE_EXCEEDED on the old agent
        client.run(job, [entry])
        assert client.wait_until_done(job, poll_interval=0.02, deadline=20).final.name == "DONE"
        expected = 20 - stream_limit(agent.server.config.rpc_threads)
        end = time.monotonic() + 10
        while sum(call.done() for call in calls) < expected and time.monotonic() < end:
            time.sleep(0.02)
        done = [call for call in calls if call.done()]
        assert len(done) == expected  # the others stay open, each holding one thread
        assert {call.code() for call in done} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    finally:
        for stop in stops:
            stop.put(None)
        for call in calls:
            call.cancel()


@pytest.mark.parametrize("logged", [False, True])
def test_twenty_idle_health_watches_leave_run_job_answering_and_stop_clean(start_agent, insecure_channel, logged):
    """Health Watch streams are gated like reflection; cancelling them while the agent stops
    does not hang the stop (grpc_health's non-blocking Watch deadlocked there now and then)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    agent = start_agent(log_rpcs=logged)
    channel = insecure_channel(agent.address)
    watch = health_pb2_grpc.HealthStub(channel).Watch
    calls = [watch(health_pb2.HealthCheckRequest(service=""), timeout=60) for _ in range(20)]
    limit = stream_limit(agent.server.config.rpc_threads)
    try:
        answers = []
        for call in calls:
            try:
                answers.append(next(call).status)
            except grpc.RpcError as exc:
                answers.append(exc.code())
        assert answers.count(health_pb2.HealthCheckResponse.SERVING) == limit
        assert answers.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 20 - limit
        assert AgentClient(channel, timeout=5.0).stage_in(new_id(), []) == []
    finally:
        for call in calls:
            call.cancel()
    agent.server.stop(grace=0.2, stop_jobs=True)  # at once after the cancels: the race that hung
    assert agent.server.wait(10)


def test_a_stream_slot_is_given_back_when_the_stream_ends():
    gate = StreamGate(1, "test")

    class Context:
        def abort(self, code, details):
            raise RuntimeError(code, details)

    def echo(requests, context):
        yield from requests

    gated = gate.wrap(echo)
    assert list(gated(iter([1, 2]), Context())) == [1, 2]
    assert list(gated(iter([3]), Context())) == [3]  # the slot came back
    first = gated(iter([4, 5]), Context())
    assert next(first) == 4  # holds the slot
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        next(gated(iter([6]), Context()))
    first.close()
    assert list(gated(iter([7]), Context())) == [7]
    with pytest.raises(ValueError):
        StreamGate(0, "none")
