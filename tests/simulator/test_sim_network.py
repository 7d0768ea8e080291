"""Max-min fair transfers worked out by hand, and the per-agent content cache (AGT-STAGE-5)."""
from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings, strategies as st

from simulator.api import run
from simulator.clock import Clock
from simulator.network import Transfers
from simulator.scenario import Scenario


def transfers(source, links):
    env = simpy.Environment()
    done = {}
    t = Transfers(Clock(env), source, links)

    def start(agent, size, name, at=0.0):
        def go(_):
            t.start(agent, size, lambda n: done.__setitem__(n, env.now), name)
        Clock(env).at(at, 1, go, None)
    return env, t, start, done


def test_two_transfers_share_one_link():
    # link 100 B/s: 100 B and 300 B at 50 B/s each; the first ends at 2, the second then gets
    # 100 B/s for its last 200 B: ends at 4.
    env, _, start, done = transfers(math.inf, [100.0])
    start(0, 100, "a")
    start(0, 300, "b")
    env.run()
    assert done == {"a": pytest.approx(2.0), "b": pytest.approx(4.0)}


def test_source_bottleneck_water_filling():
    # source 100 B/s; agent 0's link 1000, agent 1's link 20: agent 1 is capped at 20, agent 0
    # gets the remaining 80. 40 B to agent 1 end at 2; agent 0 then has 160 of 240 B and gets
    # the full 100 B/s: ends at 2.8.
    env, _, start, done = transfers(100.0, [1000.0, 20.0])
    start(0, 240, "a")
    start(1, 40, "b")
    env.run()
    assert done == {"b": pytest.approx(2.0), "a": pytest.approx(2.8)}


def test_late_arrival_slows_the_first():
    # link 10 B/s: 100 B alone from 0; at 5 (50 B done) a 20 B transfer joins: both at 5 B/s,
    # the small one ends at 9 (first has 70 B), then the first alone: 30 B more at 10 B/s -> 12.
    env, _, start, done = transfers(math.inf, [10.0])
    start(0, 100, "a")
    start(0, 20, "b", at=5.0)
    env.run()
    assert done == {"b": pytest.approx(9.0), "a": pytest.approx(12.0)}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 1000), st.floats(0, 20)), min_size=1, max_size=12),
       st.sampled_from([50.0, 200.0, math.inf]))
def test_work_conservation_and_bandwidth_bounds(flows, source):
    """Every transfer completes; no transfer beats its link alone; bytes are conserved; and while
    the source is the bottleneck the total rate equals it."""
    links = [30.0, 60.0, 100.0]
    env, t, start, done = transfers(source, links)
    for i, (agent, size, at) in enumerate(flows):
        start(agent, size, i, at)
    env.run()
    assert len(done) == len(flows)
    for i, (agent, size, at) in enumerate(flows):
        assert done[i] - at >= size / min(links[agent], source) - 1e-9
    assert t.bytes_done == pytest.approx(sum(s for _, s, _ in flows))
    assert not t.active and all(n == 0 for n in t.n)


def staging_scenario(tmp_path, *, cache=True, link=10.0, jobs="0,1\n0,1\n", slots=2, capacity=None):
    trace = tmp_path / "jobs.csv"
    trace.write_text("submit,runtime\n" + jobs)
    net = {"link_bandwidth": link, "cache": cache}
    if capacity is not None:
        net["cache_capacity"] = capacity
    return Scenario.from_dict({
        "agents": [{"count": 1, "slots": slots}],
        "network": net,
        "workload": {"arrivals": "csv", "trace": str(trace), "files": {"catalog": 1, "size": 100, "count": 1}},
        "clients": {"poll_interval": 0},
        "run": {"seed": 1},
    })


def test_cache_fetches_a_file_once_per_agent(tmp_path):
    # two jobs at t=0 need the same 100 B file over a 10 B/s link: one read, the second job
    # waits for it (a hit) and both stage-ins end at 10.
    res = run(staging_scenario(tmp_path), keep_records=True)
    a, b = sorted(res.records, key=lambda r: r.job)
    assert (a.stage_end, b.stage_end) == (10, 10)
    assert (a.cache_misses, a.bytes_staged, b.cache_hits, b.bytes_staged) == (1, 100, 1, 0)
    assert res.mean("bytes_staged") == 100 and res.mean("cache_hit_ratio") == 0.5


def test_cached_file_stages_instantly(tmp_path):
    res = run(staging_scenario(tmp_path, jobs="0,1\n20,1\n"), keep_records=True)
    a, b = sorted(res.records, key=lambda r: r.job)
    assert a.stage_end == 10 and b.stage_start == b.stage_end == 20 and b.start == 20


def test_without_cache_both_jobs_read_and_share_the_link(tmp_path):
    res = run(staging_scenario(tmp_path, cache=False), keep_records=True)
    a, b = sorted(res.records, key=lambda r: r.job)
    assert (a.stage_end, b.stage_end) == (20, 20)      # 5 B/s each for 100 B
    assert res.mean("bytes_staged") == 200 and res.mean("cache_hit_ratio") == 0


def test_cache_smaller_than_a_file_never_keeps_it(tmp_path):
    res = run(staging_scenario(tmp_path, jobs="0,1\n20,1\n", capacity=50), keep_records=True)
    a, b = sorted(res.records, key=lambda r: r.job)
    assert b.cache_misses == 1 and b.stage_end == 30
