"""The arithmetic poll schedule equals polling one by one, and its cost lands on the agents."""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings, strategies as st

from simulator.api import run
from simulator.polling import PollSchedule
from simulator.scenario import Scenario


def brute_force_polls(origin: float, t: float, interval: float, backoff: float, cap: float) -> list[float]:
    """Poll by poll, from the schedule's definition (written here, not taken from PollSchedule):
    the first poll one interval after origin, each gap `backoff` times the last, at most `cap`,
    until a poll at or after t."""
    times, gap, at = [], interval, origin
    while True:
        at += gap
        times.append(at)
        if at >= t:
            return times
        gap = min(gap * backoff, cap)


@settings(max_examples=200, deadline=None)
@given(interval=st.floats(0.5, 50), backoff=st.floats(1.0, 3.0), cap_factor=st.floats(1.0, 100.0),
       origin=st.floats(0, 1e5), delta=st.floats(-5, 5000))
def test_first_poll_matches_brute_force(interval, backoff, cap_factor, origin, delta):
    sched = PollSchedule(interval, backoff, interval * cap_factor)
    t = origin + delta
    times = brute_force_polls(origin, t, interval, backoff, interval * cap_factor)
    # a poll within rounding of t may land on either side of it: not a case to judge
    assume(all(abs(p - t) > 1e-9 * max(1.0, abs(t)) for p in times))
    seen, polls = sched.first_at_or_after(origin, t)
    assert polls == len(times)
    assert seen == pytest.approx(times[-1], rel=1e-9, abs=1e-9)
    assert seen >= t


def test_schedule_values():
    s = PollSchedule(1.0, 2.0, 8.0)
    assert s.times(0, 30) == [1, 3, 7, 15, 23, 31]
    assert s.first_at_or_after(0, 23) == (23, 5)
    assert PollSchedule(0).first_at_or_after(5, 7) == (7, 0)


def test_poll_cost_is_agent_load():
    """Faster polling, same work: more polls per job and proportionally more RPC load."""
    def scenario(interval):
        return Scenario.from_dict({
            "agents": [{"name": "g", "count": 20, "slots": 2}],
            "workload": {"rate": 1.0, "runtime": {"dist": "fixed", "value": 10}},
            "clients": {"poll_interval": interval, "rpc_cost_poll": 0.01},
            "run": {"jobs": 500, "seed": 2},
        })
    slow, fast = run(scenario(5.0)), run(scenario(0.5))
    assert slow.mean("polls_per_job") == pytest.approx(2.0, abs=0.3)     # 10 s job, 5 s polls
    assert fast.mean("polls_per_job") == pytest.approx(20.0, abs=0.5)
    ratio = fast.mean("rpc_load.g") / slow.mean("rpc_load.g")
    assert ratio == pytest.approx(fast.mean("polls_per_job") / slow.mean("polls_per_job"), rel=0.05)
    assert slow.mean("wait_mean") == fast.mean("wait_mean")            # polls do not change the agent


@settings(max_examples=100, deadline=None)
@given(width=st.sampled_from([0.5, 1.0, 3.0]), max_bins=st.sampled_from([4, 1024]),
       items=st.lists(st.tuples(st.floats(0, 50), st.floats(0, 30), st.floats(0, 5)), min_size=1, max_size=20))
def test_load_bins_spread_matches_brute_force(width, max_bins, items):
    """The O(1) spread (difference array) equals spreading bin by bin, also after coarsening."""
    from simulator.metrics import Binned
    b = Binned(width, max_bins=max_bins)
    for t0, d, v in items:
        b.spread(t0, t0 + d, v)
    w, bins = b.width, b.bins
    expected = [0.0] * len(bins)
    for t0, d, v in items:
        t1 = t0 + d
        if t1 <= t0 or int(t0 / w) == int(t1 / w):
            expected[int(t0 / w)] += v
            continue
        for i in range(len(bins)):
            lo, hi = max(t0, i * w), min(t1, (i + 1) * w)
            if hi > lo:
                expected[i] += v * (hi - lo) / d
    assert bins == pytest.approx(expected, abs=1e-9)
    assert sum(bins) == pytest.approx(sum(v for _, _, v in items), abs=1e-9)
    assert len(bins) <= max_bins
