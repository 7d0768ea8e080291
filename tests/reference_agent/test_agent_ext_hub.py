"""The watch hub (reference_agent/watch.py) on its own: order, each state once, bounds, close."""
from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings, strategies as st

from agent_helpers import new_id
from protos.errors import ResourceExhausted
from protos.states import JobState
from reference_agent.watch import EventHub, HubClosed, WatchLimits

STATES = list(JobState)


def drain(sub) -> list[tuple[str, JobState]]:
    out = []
    while (event := sub.take()) is not None:
        out.append(event)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(STATES)), max_size=40),
       st.lists(st.sampled_from(STATES), min_size=3, max_size=3))
def test_events_forward_once_each_then_finished(changes, start):
    """AGT-EXT-7: whatever is published (repeats, stale states), a stream gets the current states
    first, then per job only later states, each once, and is finished after every job's DONE."""
    jobs = [new_id() for _ in range(3)]
    hub = EventHub()
    sub = hub.subscribe("host a", dict(zip(jobs, start)))
    for index, state in changes:
        hub.publish(jobs[index], state)
    events = drain(sub)
    assert events[:3] == list(zip(jobs, start))
    for job in jobs:
        mine = [s for j, s in events if j == job]
        assert mine == sorted(set(mine)), f"{job}: {mine} not forward, each once"
    assert sub.finished == all(any(j == job and s is JobState.DONE for j, s in events) for job in jobs)
    sub.cancel()
    assert hub.open_streams() == 0


def test_unwatched_jobs_and_after_cancel_nothing_arrives():
    hub = EventHub()
    watched, other = new_id(), new_id()
    sub = hub.subscribe("host a", {watched: JobState.WAIT})
    hub.publish(other, JobState.RUN)
    assert drain(sub) == [(watched, JobState.WAIT)]
    sub.cancel()
    hub.publish(watched, JobState.RUN)
    assert drain(sub) == []


def test_bounds_per_caller_and_in_all():
    """AGT-EXT-9: RESOURCE_EXHAUSTED beyond the bound per caller and in all; a closed stream frees its place."""
    hub = EventHub(WatchLimits(per_caller=2, total=3))
    job = new_id()
    a1, a2 = (hub.subscribe("token x", {job: JobState.WAIT}) for _ in range(2))
    with pytest.raises(ResourceExhausted, match="for this caller"):
        hub.subscribe("token x", {job: JobState.WAIT})
    b1 = hub.subscribe("host 127.0.0.1", {job: JobState.WAIT})
    with pytest.raises(ResourceExhausted, match="in all"):
        hub.subscribe("host other", {job: JobState.WAIT})
    a1.cancel()
    a1.cancel()  # twice: still one place freed
    hub.subscribe("token x", {job: JobState.WAIT})
    assert hub.open_streams() == 3
    for sub in (a2, b1):
        sub.cancel()


@pytest.mark.parametrize("bad", [dict(per_caller=0), dict(total=-1)])
def test_limits_refuse_nonsense(bad):
    with pytest.raises(ValueError, match="must be >= 1"):
        WatchLimits(**bad)


def test_close_wakes_blocking_and_async_readers_with_hub_closed():
    """AGT-EXT-8: shutdown ends every open stream (the servicer answers UNAVAILABLE); no new one opens."""
    hub = EventHub()
    job = new_id()
    blocking = hub.subscribe("host a", {job: JobState.RUN})
    asynchronous = hub.subscribe("host a", {job: JobState.RUN})
    assert blocking.take() == (job, JobState.RUN)
    outcome: list[object] = []

    def reader():
        try:
            blocking.next(timeout=30)
        except HubClosed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()

    async def read_async():
        assert await asynchronous.next_async() == (job, JobState.RUN)
        hub_closer = asyncio.get_running_loop().run_in_executor(None, hub.close)
        with pytest.raises(HubClosed):
            await asyncio.wait_for(asynchronous.next_async(), timeout=30)
        await hub_closer

    asyncio.run(read_async())
    thread.join(30)
    assert outcome and isinstance(outcome[0], HubClosed)
    with pytest.raises(HubClosed):
        hub.subscribe("host a", {job: JobState.RUN})


def test_async_reader_is_woken_by_a_publish_from_another_thread():
    hub = EventHub()
    job = new_id()
    sub = hub.subscribe("host a", {job: JobState.WAIT})

    async def read():
        first = await sub.next_async()
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: threading.Thread(target=hub.publish, args=(job, JobState.DONE)).start())
        second = await asyncio.wait_for(sub.next_async(), timeout=30)
        return first, second

    assert asyncio.run(read()) == ((job, JobState.WAIT), (job, JobState.DONE))
    assert sub.finished
