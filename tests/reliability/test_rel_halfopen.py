"""Issue 18 item 1: calls that send their headers but never their request message (half-open)
must not stop the agent serving others, with or without --auth-tokens; a call that never sends
its message is ended; work beyond the agent's bound is refused with RESOURCE_EXHAUSTED.

Each test fails on the threaded agent of before (16 RPC threads, each held by a half-open call
while grpcio waited for its message: every other call got DEADLINE_EXCEEDED)."""
from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest

from protos.client import AgentCallError, AgentClient
from reference_agent.domain import AgentCore
from reference_agent.server import AgentServer
from reference_agent.servicer import HEALTH_CHECK, SERVICE
from shared_helpers import new_id

RUN_JOB = f"/{SERVICE.full_name}/RunJob"
STAGE = f"/{SERVICE.full_name}/StageInFiles"
TOKEN = "halfopen-test-token"


class HalfOpen:
    """`count` calls to `method` over `channels` connections that send HEADERS and no DATA:
    a client-streaming call whose request iterator blocks (the wire of a unary call whose
    client never sends its message). `release()` lets the iterators end."""

    def __init__(self, address: str, method: str, count: int, channels: int = 2, metadata=None):
        self._stop = threading.Event()
        self.channels = [grpc.insecure_channel(address) for _ in range(channels)]
        self.calls = []
        for i in range(count):
            call = self.channels[i % channels].stream_unary(method)
            self.calls.append(call.future(self._never(), timeout=120, metadata=metadata))

    def _never(self):
        self._stop.wait(120)
        return
        yield  # pragma: no cover - a request stream that sends nothing

    def ended(self) -> list:
        return [call for call in self.calls if call.done()]

    def wait_ended(self, deadline: float) -> list:
        end = time.monotonic() + deadline
        while len(self.ended()) < len(self.calls) and time.monotonic() < end:
            time.sleep(0.02)
        return self.ended()

    def release(self) -> None:
        self._stop.set()
        for call in self.calls:
            call.cancel()
        for channel in self.channels:
            channel.close()


def _served(agent, channel: grpc.Channel, metadata=()) -> None:
    """A well-behaved client stages, submits and polls a job to DONE, each call within 5 s."""
    client = AgentClient(channel, timeout=5.0, metadata=metadata) if metadata else AgentClient(channel, timeout=5.0)
    entry = agent.put("print('served')\n")
    job = new_id()
    assert client.stage_in(job, [entry]) == [entry]  # DEADLINE_EXCEEDED on the threaded agent
    client.run(job, [entry])
    _poll_until_done(client, job)


def _poll_until_done(client: AgentClient, job: str, deadline: float = 20.0) -> None:
    """Status polls (one call each, none retried) until the job is DONE."""
    end = time.monotonic() + deadline
    while client.status(job).name != "DONE":
        assert time.monotonic() < end, f"job {job} not DONE within {deadline} s"
        time.sleep(0.02)


def _wait_opened(agent, calls: int, deadline: float = 10.0) -> None:
    """The agent holds the half-open calls (they wait for their request message)."""
    end = time.monotonic() + deadline
    while agent.server.counts.awaiting_message < calls and time.monotonic() < end:
        time.sleep(0.02)
    assert agent.server.counts.awaiting_message >= calls


@pytest.mark.parametrize("method", [RUN_JOB, HEALTH_CHECK])
def test_forty_half_open_calls_leave_a_client_served(start_agent, insecure_channel, method):
    agent = start_agent(request_timeout=60.0)  # the deadline does not rescue: coroutines, not threads
    attack = HalfOpen(agent.address, method, 40)
    try:
        _wait_opened(agent, 40)
        _served(agent, insecure_channel(agent.address))
        assert attack.ended() == []  # still open: the client was served alongside them
    finally:
        attack.release()


def test_half_open_calls_without_a_token_are_refused_at_once(start_agent, insecure_channel, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    agent = start_agent(auth_tokens=str(tokens), request_timeout=60.0)
    attack = HalfOpen(agent.address, RUN_JOB, 40)
    try:
        ended = attack.wait_ended(10)  # UNAUTHENTICATED on the headers, before any message
        assert len(ended) == 40
        assert {call.exception().code() for call in ended} == {grpc.StatusCode.UNAUTHENTICATED}
        _served(agent, insecure_channel(agent.address), metadata=(("authorization", f"Bearer {TOKEN}"),))
    finally:
        attack.release()


def test_half_open_calls_with_a_token_leave_a_client_served(start_agent, insecure_channel, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    agent = start_agent(auth_tokens=str(tokens), request_timeout=60.0)
    bearer = (("authorization", f"Bearer {TOKEN}"),)
    attack = HalfOpen(agent.address, STAGE, 40, metadata=bearer)
    try:
        _wait_opened(agent, 40)
        _served(agent, insecure_channel(agent.address), metadata=bearer)
        assert attack.ended() == []
    finally:
        attack.release()


@pytest.mark.parametrize("method", [RUN_JOB, HEALTH_CHECK])
def test_a_call_that_never_sends_its_message_is_ended(start_agent, method):
    agent = start_agent(request_timeout=0.5)
    attack = HalfOpen(agent.address, method, 3, channels=1)
    try:
        ended = attack.wait_ended(15)
        assert len(ended) == 3
        errors = [call.exception() for call in ended]
        assert {e.code() for e in errors} == {grpc.StatusCode.DEADLINE_EXCEEDED}
        assert all("no request message within 0.5 s" in e.details() for e in errors)
    finally:
        attack.release()


class _HeldCore(AgentCore):
    """The reference core, except that staging waits for `release` (work that holds its thread)."""

    release = threading.Event()
    entered = threading.Semaphore(0)

    def stage_in(self, req):
        type(self).entered.release()
        type(self).release.wait(30)
        return super().stage_in(req)


class _HeldServer(AgentServer):
    def __init__(self, config, telemetry=None):
        super().__init__(config, core_factory=_HeldCore, telemetry=telemetry)


def test_work_beyond_the_bound_is_refused_with_resource_exhausted(start_agent):
    _HeldCore.release.clear()
    agent = start_agent(server_class=_HeldServer, work_threads=1, max_queued_calls=1)
    client = AgentClient(agent.channel, timeout=20.0)
    held = [threading.Thread(target=client.stage_in, args=(new_id(), [])) for _ in range(2)]
    try:
        for thread in held:
            thread.start()
        assert _HeldCore.entered.acquire(timeout=10)  # one runs on the one thread
        end = time.monotonic() + 10
        while agent.server.work.pending < 2 and time.monotonic() < end:
            time.sleep(0.01)
        assert agent.server.work.pending == 2  # and one waits for it
        with pytest.raises(AgentCallError) as refused:
            AgentClient(agent.channel, timeout=5.0).stage_in(new_id(), [])
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "retry with backoff" in refused.value.details
    finally:
        _HeldCore.release.set()
        for thread in held:
            thread.join(20)
    assert client.stage_in(new_id(), []) == []  # the bound frees as the work ends


def test_connections_beyond_the_cap_are_refused_and_jobs_still_run(start_agent):
    agent = start_agent(max_connections=3)
    assert agent.client.stage_in(new_id(), []) == []  # the harness's own connection is one of them
    channels = [grpc.insecure_channel(agent.address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(4)]
    try:
        answered = []
        for channel in channels:
            try:
                AgentClient(channel, timeout=3.0).stage_in(new_id(), [])
                answered.append(True)
            except AgentCallError as exc:
                assert exc.code == grpc.StatusCode.UNAVAILABLE
                answered.append(False)
        assert answered == [True, True, False, False]
        _served(agent, agent.channel)  # on the first connection, accepted before: jobs still run
    finally:
        for channel in channels:
            channel.close()


def test_start_raises_the_open_files_limit_to_the_hard_limit(start_agent):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"hard RLIMIT_NOFILE is {hard}: nothing to raise to")
    lowered = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard - 1)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        agent = start_agent()
        after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert agent.server.open_files == (lowered, after)
        assert after == hard or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_idle_connection_is_closed_after_max_connection_idle(start_agent):
    agent = start_agent(max_connection_idle=0.3)
    states: queue.Queue = queue.Queue()
    with grpc.insecure_channel(agent.address) as channel:
        AgentClient(channel, timeout=5.0).stage_in(new_id(), [])
        channel.subscribe(states.put)
        seen, end = [], time.monotonic() + 10
        while grpc.ChannelConnectivity.IDLE not in seen and time.monotonic() < end:
            try:
                seen.append(states.get(timeout=0.1))
            except queue.Empty:
                pass
        channel.unsubscribe(states.put)
    assert seen[0] == grpc.ChannelConnectivity.READY and grpc.ChannelConnectivity.IDLE in seen


def test_a_client_pinging_too_often_is_sent_away(start_agent):
    """Keepalive enforcement: pings closer than min_client_ping_interval, past two strikes,
    close the connection (GOAWAY too_many_pings); the call on it ends UNAVAILABLE."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    agent = start_agent(min_client_ping_interval=10.0)
    options = [("grpc.keepalive_time_ms", 50), ("grpc.keepalive_timeout_ms", 1000),
               ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
    with grpc.insecure_channel(agent.address, options=options) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - start < 15  # not the call's own deadline
