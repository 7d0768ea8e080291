"""Clients that watch instead of polling, and clients that cancel (PROTOCOL-EXT.md AGT-EXT-5..7):
notice delays, polls, events, agent CPU and freed slots, each against an independent oracle."""
from __future__ import annotations

import copy
import math

import pytest

from simulator.api import run
from simulator.checks import ScenarioError
from simulator.engine import Simulation
from simulator.scenario import Scenario

LATENCY = 0.004
EXACT = pytest.approx(LATENCY, abs=1e-9)   # end + latency - end, in floating point


def scenario(clients: dict, *, jobs=60, rate=0.5, runtime=7.0, count=4, slots=2, **extra):
    data = {
        "agents": [{"name": "a", "count": count, "slots": slots}],
        "workload": {"arrivals": "deterministic", "rate": rate, "runtime": runtime},
        "clients": {"rpc_latency": LATENCY, **clients},
        "run": {"jobs": jobs, "seed": 5},
    }
    for k, v in extra.items():
        data[k] = v
    return Scenario.from_dict(data)


def records(sc):
    recs = []
    metrics = Simulation(sc, 0, sink=recs.append).run()
    return sorted(recs, key=lambda r: r.job), metrics


def test_a_watching_client_knows_done_one_rpc_latency_after_the_end_and_never_polls():
    costs = {"rpc_cost_poll": "1ms", "rpc_cost_watch": "0.8ms", "rpc_cost_event": "0.3ms", "rpc_cost_stream": 1e-5}
    recs, m = records(scenario({"wait": "watch", **costs}, runtime={"dist": "exponential", "mean": 20}, jobs=300))
    assert len(recs) == 300
    assert all(r.done_seen - r.end == EXACT and r.polls == 0 for r in recs)
    assert m["notice_mean"] == pytest.approx(LATENCY) and m["notice_max"] == pytest.approx(LATENCY)
    assert m["polls_sent"] == 0 and m["rpc_cpu.poll"] == 0
    # events: the current state when the stream opens, RUN if it started later, DONE
    waited = sum(r.start > r.run_submit for r in recs)
    assert 0 < waited < 300
    assert m["watch_streams_opened"] == 300 and m["watch_events_sent"] == 2 * 300 + waited
    cpu = sum(0.8e-3 + (2 + (r.start > r.run_submit)) * 0.3e-3 + (r.end - r.run_submit) * 1e-5 for r in recs)
    assert m["rpc_cpu.watch"] == pytest.approx(cpu, rel=1e-12)
    assert m["rpc_cpu"] == pytest.approx(cpu, rel=1e-12)


def poll_times(origin, interval, backoff, cap, until):
    """Every poll time of a schedule up to the first at or after `until` (the oracle)."""
    out, t, step = [], origin, interval
    while True:
        t += step
        out.append(t)
        if t >= until:
            return out
        step = min(step * backoff, cap)


def test_polling_notice_delay_is_the_schedule_computed_independently():
    clients = {"poll_interval": "0.5s", "poll_backoff": 2.0, "poll_max_interval": "6s", "rpc_cost_poll": "1ms"}
    recs, m = records(scenario(clients, runtime={"dist": "uniform", "low": 1, "high": 40}, jobs=200, count=50))
    total = 0
    for r in recs:
        times = poll_times(r.run_submit, 0.5, 2.0, 6.0, r.end)
        assert r.done_seen == pytest.approx(times[-1], abs=1e-9) and r.polls == len(times), r
        total += len(times)
    assert m["polls_sent"] == total and m["rpc_cpu.poll"] == pytest.approx(total * 1e-3)
    delays = [r.done_seen - r.end for r in recs]
    assert m["notice_mean"] == pytest.approx(sum(delays) / len(delays), rel=1e-9)
    assert m["watch_events_sent"] == 0 and m["watch_streams_opened"] == 0


def test_poll_restart_starts_the_backoff_again_when_a_poll_sees_run():
    clients = {"poll_interval": "0.25s", "poll_backoff": 2.0, "poll_max_interval": "4s", "poll_restart": True}
    recs, _ = records(scenario(clients, count=1, slots=1, rate=0.2, runtime=9.0, jobs=12))
    waited = 0
    for r in recs:
        if r.start > r.run_submit:
            first = poll_times(r.run_submit, 0.25, 2.0, 4.0, r.start)
            if first[-1] < r.end:   # that poll saw RUN: a fresh schedule from it
                waited += 1
                rest = poll_times(first[-1], 0.25, 2.0, 4.0, r.end)
                assert (r.done_seen, r.polls) == (pytest.approx(rest[-1]), len(first) + len(rest)), r
                continue
        times = poll_times(r.run_submit, 0.25, 2.0, 4.0, r.end)
        assert (r.done_seen, r.polls) == (pytest.approx(times[-1]), len(times)), r
    assert waited >= 5


def test_a_mix_watches_the_share_of_jobs_and_leaves_the_jobs_unchanged():
    base = {"poll_interval": "1s", "poll_backoff": 1.5, "poll_max_interval": "10s"}
    n = 4000
    mixed, m = records(scenario({**base, "watch_share": 0.3}, jobs=n, rate=2, count=20, runtime={"dist": "exponential", "mean": 5}))
    polled, _ = records(scenario(base, jobs=n, rate=2, count=20, runtime={"dist": "exponential", "mean": 5}))
    watchers = sum(r.polls == 0 for r in mixed)
    sd = math.sqrt(n * 0.3 * 0.7)
    assert abs(watchers - 0.3 * n) < 4 * sd, watchers
    assert m["watch_streams_opened"] == watchers
    # the same jobs (common random numbers): submissions, starts and ends identical
    assert [(r.submit, r.start, r.end) for r in mixed] == [(r.submit, r.start, r.end) for r in polled]
    assert all(r.done_seen - r.end == EXACT for r in mixed if r.polls == 0)


def fifo_oracle(recs, runtime):
    """One agent, one slot, FIFO: replay the jobs with the cancel times the records show and
    derive every start, end and outcome; a cancel frees the slot, a WAIT job cancelled never starts."""
    free = 0.0
    out = []
    for r in recs:                       # in RunJob order
        cancel = r.end if r.outcome == "cancelled" else math.inf
        start = max(r.run_submit, free)
        if cancel < start:
            out.append((math.nan, cancel, "cancelled"))
            continue
        natural = start + runtime
        end = min(natural, cancel)
        free = end
        out.append((start, end, "cancelled" if cancel < natural else "succeeded"))
    return out


def test_cancelled_jobs_free_their_slot_and_waiting_ones_never_start():
    sc = scenario({"cancel_share": 0.5, "cancel_after": "150s", "poll_interval": 0}, count=1, slots=1, rate=1 / 60,
                  runtime=100.0, jobs=80)
    recs, m = records(sc)
    recs.sort(key=lambda r: r.run_submit)
    cancelled = [r for r in recs if r.outcome == "cancelled"]
    in_wait = [r for r in cancelled if math.isnan(r.start)]
    in_run = [r for r in cancelled if not math.isnan(r.start)]
    assert in_wait and in_run, (len(in_wait), len(in_run))
    for r in cancelled:
        assert r.end - r.run_submit == pytest.approx(150.0) and r.done_seen - r.end == EXACT
    expected = fifo_oracle(recs, 100.0)
    for r, (start, end, outcome) in zip(recs, expected):
        assert r.outcome == outcome and r.end == pytest.approx(end), (r, start, end, outcome)
        assert (math.isnan(start) and math.isnan(r.start)) or r.start == pytest.approx(start), (r, start)
    saved = sum(100.0 for _ in in_wait) + sum(r.start + 100.0 - r.end for r in in_run)
    assert m["slot_hours_saved"] == pytest.approx(saved / 3600)
    assert m["jobs_cancelled.wait"] == len(in_wait) and m["jobs_cancelled.run"] == len(in_run)
    assert m["cancels_sent"] >= len(cancelled)


def test_a_polling_client_whose_timeout_comes_before_its_next_poll_learns_done_from_the_cancel():
    """The job ended (its poll not yet due); the client's cancel answers DONE and changes nothing."""
    clients = {"poll_interval": "100s", "cancel_share": 1.0, "cancel_after": "30s", "rpc_cost_cancel": "2ms"}
    recs, m = records(scenario(clients, runtime=10.0, jobs=5, rate=0.01))
    for r in recs:
        assert r.outcome == "succeeded" and r.polls == 0
        assert r.done_seen == pytest.approx(r.run_submit + 30.0 + LATENCY)
    assert m["cancels_sent"] == 5 and m["jobs_cancelled"] == 0 and m["rpc_cpu.cancel"] == pytest.approx(0.01)


def test_watch_with_agent_failures_sees_done_after_the_repair():
    sc = scenario({"wait": "watch"}, count=3, slots=2, jobs=400, rate=1.0, runtime={"dist": "exponential", "mean": 5},
                  agents=[{"name": "a", "count": 3, "slots": 2,
                           "failures": {"time_to_failure": {"dist": "exponential", "mean": 60}, "time_to_repair": 10}}])
    recs, m = records(sc)
    interrupted = [r for r in recs if r.outcome == "interrupted"]
    assert interrupted and all(r.polls == 0 for r in recs)
    assert all(r.done_seen - r.end > LATENCY for r in interrupted)     # after the repair, plus the latency
    assert all(r.done_seen - r.end == EXACT for r in recs if r.outcome == "succeeded")
    assert m["watch_streams_opened"] == len(recs) + len(interrupted)     # one stream opened again each


@pytest.mark.parametrize("clients,key,shown", [
    ({"wait": "stream"}, "clients.wait", "must be one of poll, watch"),
    ({"wait": "wach"}, "clients.wait", "did you mean 'watch'"),
    ({"watch_share": 1.5}, "clients.watch_share", "between 0 and 1"),
    ({"watch_share": -0.1}, "clients.watch_share", ">= 0"),
    ({"cancel_share": 0.2}, "clients.cancel_after", "is required when cancel_share > 0"),
    ({"cancel_after": "1h"}, "clients.cancel_share", "must be > 0"),
    ({"cancel_share": 0.2, "cancel_after": "soon"}, "clients.cancel_after", "'soon'"),
    ({"rpc_cost_event": "-1ms"}, "clients.rpc_cost_event", "'-1ms'"),
    ({"poll_restart": "yes"}, "clients.poll_restart", "true or false"),
])
def test_bad_client_keys_name_the_key(clients, key, shown):
    with pytest.raises(ScenarioError) as info:
        scenario(clients)
    assert info.value.key == key and shown in str(info.value), str(info.value)


def test_watch_cost_defaults_follow_the_poll_cost():
    c = scenario({"rpc_cost_poll": "0.6ms"}).clients
    assert (c.rpc_cost_watch, c.rpc_cost_event, c.rpc_cost_cancel, c.rpc_cost_stream) == \
        pytest.approx((0.6e-3, 0.3e-3, 0.6e-3, 0.0))
    assert c.wait == "poll" and c.watch_share == 0.0
    assert scenario({"wait": "watch"}).clients.watch_share == 1.0


def test_replications_of_a_mixed_scenario_are_deterministic():
    sc = scenario({"watch_share": 0.5, "cancel_share": 0.3, "cancel_after": {"dist": "exponential", "mean": 10}},
                  jobs=300, rate=1.0, runtime={"dist": "exponential", "mean": 6})
    sc = sc.with_value("run.replications", 2)
    a, b = run(sc, keep_records=True), run(copy.deepcopy(sc), keep_records=True, workers=2)
    assert repr(a.records) == repr(b.records) and repr(a.metrics) == repr(b.metrics)   # NaN != NaN


def test_the_watch_example_scaled_down_answers_as_documented():
    """examples/watch.toml at 1/100 of its size: polling with today's backoff costs about
    runtime / 1.5 s polls a job and a notice delay near half the 1.5 s cap; watching one latency."""
    from pathlib import Path
    sc = Scenario.from_toml(Path(__file__).resolve().parents[2] / "examples" / "watch.toml")
    sc = sc.with_values({"agents.count": 10, "workload.rate": 0.417, "run.duration": "2h", "run.warmup": "1h"})
    poll = Simulation(sc, 0).run()
    watch = Simulation(sc.with_value("clients.wait", "watch"), 0).run()
    assert poll["polls_per_job"] == pytest.approx(2400 / 1.5, rel=0.1)
    assert 0.6 < poll["notice_mean"] < 0.9 and poll["notice_max"] <= 1.5 + 1e-9
    assert watch["notice_max"] == pytest.approx(0.004353) and watch["polls_sent"] == 0
    assert poll["rpc_cpu.poll"] / watch["rpc_cpu"] > 300
