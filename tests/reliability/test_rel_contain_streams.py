"""Issue 11 item 10: idle server-reflection and health Watch streams cannot starve Agent calls;
they are bounded per method (max_open_streams) and end with UNAVAILABLE when the agent stops."""
from __future__ import annotations

import queue
import time

import grpc
import pytest

from protos.client import AgentClient
from reference_agent.servicer import REFLECTION_INFO
from shared_helpers import new_id


def _idle_requests(stop: queue.Queue):
    """A request stream that sends nothing until `stop` gets an item."""
    stop.get()
    return
    yield  # pragma: no cover - a generator that yields nothing


def test_twenty_idle_reflection_streams_leave_run_job_answering(start_agent, insecure_channel):
    agent = start_agent(max_open_streams=4)
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
        expected = 20 - agent.server.config.max_open_streams
        end = time.monotonic() + 10
        while sum(call.done() for call in calls) < expected and time.monotonic() < end:
            time.sleep(0.02)
        done = [call for call in calls if call.done()]
        assert len(done) == expected  # the others stay open (a coroutine each, no thread)
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

    agent = start_agent(log_rpcs=logged, max_open_streams=4)
    channel = insecure_channel(agent.address)
    watch = health_pb2_grpc.HealthStub(channel).Watch
    calls = [watch(health_pb2.HealthCheckRequest(service=""), timeout=60) for _ in range(20)]
    limit = agent.server.config.max_open_streams
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


def test_open_streams_end_with_unavailable_when_the_agent_stops(start_agent, insecure_channel):
    """AGT-EXT-8's premise for every stream the agent serves: a stop ends open streams with
    UNAVAILABLE at once (not after the grace period), after health said NOT_SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    agent = start_agent()
    channel = insecure_channel(agent.address)
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
    stop = queue.Queue()
    reflection = channel.stream_stream(REFLECTION_INFO)(_idle_requests(stop), timeout=60)
    try:
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        start = time.monotonic()
        agent.server.stop(grace=30, stop_jobs=True)
        assert time.monotonic() - start < 20  # the streams did not hold the stop for its grace
        statuses = []
        with pytest.raises(grpc.RpcError) as ended:
            for answer in watch:
                statuses.append(answer.status)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert statuses in ([], [health_pb2.HealthCheckResponse.NOT_SERVING])
        with pytest.raises(grpc.RpcError) as ended:
            next(reflection)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop.put(None)
        watch.cancel()
        reflection.cancel()


def test_a_stream_gate_refuses_below_one():
    import asyncio

    from reference_agent.streams import StreamGate

    with pytest.raises(ValueError, match="limit 0"):
        StreamGate(0, "none", asyncio.Event())
