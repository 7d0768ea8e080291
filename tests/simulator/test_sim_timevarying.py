"""Time-varying load: rate profiles and bursts, job classes, autoscaling, cost, metrics by hour."""
from __future__ import annotations

import copy
import itertools
import math
import random

import pytest

from simulator import theory_tv
from simulator.api import run
from simulator.autoscale import GroupState
from simulator.checks import ScenarioError
from simulator.engine import Simulation
from simulator.profiles import Burst, RateProfile
from simulator.scenario import Scenario

BASE = {
    "agents": [{"name": "w", "count": 4, "slots": 2}],
    "workload": {"profile": {"points": [[0, 1.0], [100, 3.0]], "repeat": 200},
                 "runtime": {"dist": "exponential", "mean": 1.0}},
    "clients": {"poll_interval": 0},
    "run": {"duration": 400, "seed": 1},
}


def scenario(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node[p] if not p.isdigit() else node[int(p)]
        node[last] = value
    return Scenario.from_dict(data)


# --- profiles ---------------------------------------------------------------------------------

def test_profile_rate_is_piecewise_linear_and_repeats():
    p = RateProfile(((0, 0.0), (50, 10.0), (100, 0.0)), repeat=200, bursts=(Burst(30, 10, 20.0),))
    assert [p.rate(t) for t in (0, 25, 50, 75, 150, 250)] == [0.0, 5.0, 10.0, 5.0, 0.0, 10.0]
    assert p.rate(35) == 7.0 + 20.0 and p.rate(40) == 8.0            # the burst is [30, 40)
    assert p.mean(200) == pytest.approx((500 + 200) / 200)


def test_constant_profile_draws_like_homogeneous_poisson():
    a = scenario(**{"workload.profile": {"points": [[0, 2.0]]}})
    b = Scenario.from_dict({**copy.deepcopy(BASE), "workload": {"rate": 2.0, "runtime": BASE["workload"]["runtime"]}})
    ra, rb = run(a, keep_records=True), run(b, keep_records=True)
    assert [r.submit for r in ra.records] == [r.submit for r in rb.records]


def test_profile_arrivals_follow_the_integrated_rate():
    """Counts in each piece of a repeating profile with a burst: Poisson with the integral as mean."""
    p = RateProfile(((0, 2.0), (60, 8.0), (100, 8.0)), repeat=120, bursts=(Burst(500, 20, 30.0),))
    times = list(itertools.takewhile(lambda t: t < 120 * 50, p.arrivals(random.Random(5))))
    pieces = [(0, 60), (60, 100), (100, 120)]
    for a, b in pieces:
        expected = 50 * sum(p.rate(a + (b - a) * (i + 0.5) / 1000) * (b - a) / 1000 for i in range(1000))
        got = sum(1 for t in times if a <= t % 120 < b and not 500 <= t < 520)
        assert abs(got - expected) < 4 * math.sqrt(expected), (a, b, got, expected)
    burst = sum(1 for t in times if 500 <= t < 520)
    expected = sum(p.rate(500 + i * 0.02 + 0.01) * 0.02 for i in range(1000))
    assert abs(burst - expected) < 4 * math.sqrt(expected)


def test_mtginf_occupancy_matches_the_exact_mean():
    """M(t)/M/infinity over two sinusoidal days: jobs in RUN at 8 instants vs m(t)."""
    checks = theory_tv.mtginf_checks(replications=24, seed=3)
    assert len(checks) == 8 and all(c.theory > 10 for c in checks)
    assert all(c.in_ci for c in checks), [(c.name, c.theory, c.low, c.high) for c in checks]
    # m(t) differs from the stationary mean rate * E[runtime] = 100: the day is really varying
    assert max(c.theory for c in checks) > 150 and min(c.theory for c in checks) < 50


@pytest.mark.slow
def test_slowly_varying_rate_approaches_erlang_c_at_each_level():
    checks = theory_tv.stationary_limit_checks(replications=8, seed=2)
    assert all(c.ok for c in checks), [(c.name, c.theory, c.mean, c.low, c.high) for c in checks]


@pytest.mark.parametrize("profile, key, shown", [
    ({"points": []}, "workload.profile.points", "must be a list of [time, rate] pairs"),
    ({"points": [[5, 1]]}, "workload.profile.points[0]", "the first point must be at time 0"),
    ({"points": [[0, 1], [0, 2]]}, "workload.profile.points[1]", "times must increase"),
    ({"points": [[0, -1]]}, "workload.profile.points[0]", "rate must be a finite number"),
    ({"points": [[0, 1], ["1x", 2]]}, "workload.profile.points[1]", "time: '1x' is not a duration"),
    ({"points": [[0, 0]]}, "workload.profile.points", "every rate is 0"),
    ({"points": [[0, 1], [300, 1]], "repeat": "100s"}, "workload.profile.repeat", "shorter than the last point"),
    ({"points": [[0, 1]], "file": "x.csv"}, "workload.profile.file", "give points or file, not both"),
    ({"points": [[0, 1]], "repat": 10}, "workload.profile.repat", "did you mean 'repeat'"),
])
def test_bad_profiles_name_the_key(profile, key, shown):
    with pytest.raises(ScenarioError) as exc:
        scenario(**{"workload.profile": profile})
    assert exc.value.key == key and shown in str(exc.value)


def test_profile_from_csv(tmp_path):
    (tmp_path / "day.csv").write_text("time,rate\n0,1\n2min,3\n")
    data = copy.deepcopy(BASE)
    data["workload"]["profile"] = {"file": "day.csv", "repeat": "4min"}
    sc = Scenario.from_dict(data, base_dir=tmp_path)
    assert sc.workload.profile.points == ((0.0, 1.0), (120.0, 3.0))
    (tmp_path / "bad.csv").write_text("time,rate\n0,1\n60,lots\n")
    data["workload"]["profile"]["file"] = "bad.csv"
    with pytest.raises(ScenarioError, match=r"bad.csv:3: rate 'lots' is not a number"):
        Scenario.from_dict(data, base_dir=tmp_path)
    (tmp_path / "nohead.csv").write_text("0,1\n")
    data["workload"]["profile"]["file"] = "nohead.csv"
    with pytest.raises(ScenarioError, match=r"expected the header 'time,rate'"):
        Scenario.from_dict(data, base_dir=tmp_path)


def test_profile_conflicts():
    with pytest.raises(ScenarioError, match="give rate or profile, not both"):
        scenario(**{"workload.rate": 2.0})
    with pytest.raises(ScenarioError, match="needs arrivals = 'poisson'"):
        scenario(**{"workload.arrivals": "deterministic"})
    with pytest.raises(ScenarioError, match=r"workload.bursts\[0\].rate"):
        scenario(**{"workload.bursts": [{"start": 1, "duration": 2, "rate": -1}]})


def test_hourly_bins_of_a_daily_profile():
    """A compressed 'day' of 240 s repeats: bins of 10 s by (t mod 240); the peak bins wait most."""
    sc = scenario(**{"workload.profile": {"points": [[0, 0.5], [120, 4.5]], "repeat": 240},
                     "run.duration": 960, "agents.0.count": 2, "run.bin": 10})
    assert sc.run.bin_period == 240
    m = run(sc).replications[0].metrics
    bins = sorted(k for k in m if k.endswith(".wait_p95"))
    assert len(bins) == 24 and bins[0] == "bin.000.wait_p95"
    by_bin = {int(k.split(".")[1]): m[k] for k in bins}
    assert max(by_bin[i] for i in range(10, 14)) > 5 * max(by_bin[i] for i in range(20, 24))
    assert sum(m[f"bin.{i:03d}.jobs"] for i in range(24)) == m["jobs_started"]


# --- job classes ---------------------------------------------------------------------------------

def test_job_classes_each_with_rate_runtime_python_and_files():
    data = {
        "agents": [{"name": "a", "count": 4, "slots": 4, "python": ["3.11.9", "3.12.4"]}],
        "network": {"source_bandwidth": "1GB/s"},
        "workload": {"classes": [
            {"name": "short", "rate": 2.0, "runtime": 1.0, "python": ">=3.12",
             "files": {"catalog": 10, "size": "1MB"}},
            {"name": "long", "profile": {"points": [[0, 0.5]]}, "runtime": 10.0,
             "files": {"catalog": 5, "size": "50MB"}},
        ]},
        "clients": {"poll_interval": 0},
        "run": {"duration": 500, "seed": 1},
    }
    sc = Scenario.from_dict(data)
    assert [w.name for w in sc.job_classes] == ["short", "long"]
    recs = run(sc, keep_records=True).records
    short = [r for r in recs if r.python == ">=3.12"]
    long = [r for r in recs if r.python == ""]
    assert abs(len(short) - 1000) < 4 * math.sqrt(1000) and abs(len(long) - 250) < 4 * math.sqrt(250)
    assert all(r.end - r.start == pytest.approx(1.0) for r in short)
    assert all(r.end - r.start == pytest.approx(10.0) for r in long)
    m = run(sc).replications[0].metrics
    assert m["class.short.jobs"] + m["class.long.jobs"] == m["jobs_started"]
    assert m["class.short.jobs"] == len([r for r in short if r.start == r.start])
    # class files are distinct: the long class's 50 MB files are ids 10..14
    assert {round(r.bytes_staged / 1e6) for r in long if r.cache_misses} <= {50, 100}
    plain = {k: v for k, v in data["workload"]["classes"][0].items() if k != "name"}
    one = Scenario.from_dict({**data, "workload": plain})
    assert one.job_classes == (one.workload,)


@pytest.mark.parametrize("classes, key, shown", [
    ([], "workload.classes", "must be one or more"),
    ([{"rate": 1, "runtime": 1}, {"name": "class0", "rate": 1, "runtime": 1}], "workload.classes[1].name",
     "duplicate class name"),
    ([{"rate": 1}], "workload.classes[0].runtime", "is required"),
    ([{"rate": 1, "runtime": 1, "python": ">=3.13"}], "workload.classes[0].python", "no agent group offers"),
])
def test_bad_classes(classes, key, shown):
    data = copy.deepcopy(BASE)
    data["workload"] = {"classes": classes}
    with pytest.raises(ScenarioError) as exc:
        Scenario.from_dict(data)
    assert exc.value.key == key and shown in str(exc.value)


# --- autoscaling and cost ------------------------------------------------------------------------

def autoscaled(policy=None, **auto):
    data = {
        "agents": [{"name": "fleet", "count": 2, "slots": 2, "price_per_hour": 3.0,
                    "autoscale": {"min": 1, "max": 20, "interval": "10s", "provisioning_delay": "30s",
                                  "cooldown": "20s", **auto, **({"policy": policy} if policy else {})}}],
        "workload": {"profile": {"points": [[0, 0.2], [300, 6.0], [600, 0.2]], "repeat": 900},
                     "runtime": {"dist": "exponential", "mean": 4.0}},
        "clients": {"poll_interval": 0},
        "run": {"duration": 1800, "seed": 1},
    }
    return Scenario.from_dict(data)


def test_autoscaler_follows_the_load_and_never_kills_a_running_job():
    sizes = []
    sc = autoscaled()
    sim = Simulation(sc, 0, sink=(recs := []).append)
    scaler = sim.scalers[0]
    original = scaler._scale_in

    def watched(n):
        busy_before = [(a.index, a.load) for a in scaler.members if a.up]
        original(n)
        for idx, load in busy_before:
            if load:
                assert sim.agents[idx].up, "an agent with work was switched off"
        sizes.append(scaler.active)
    scaler._scale_in = watched
    m = sim.run()
    assert all(r.outcome == "succeeded" for r in recs) and m["jobs_unfinished"] == 0
    assert 1 <= min(sizes) and m["agents_peak.fleet"] > 5          # it grew at the peak, shrank after
    assert m["agents_peak.fleet"] <= 20 and sizes and min(sizes) < 4
    assert m["cost"] == pytest.approx(3.0 * m["agent_hours"])
    assert m["agent_hours"] < 20 * sim.env.now / 3600               # cheaper than the max all the time


def test_provisioning_delay_and_cooldown():
    sc = autoscaled(provisioning_delay="100s", cooldown="1000s")
    sim = Simulation(sc, 0)
    events = []
    scaler = sim.scalers[0]
    out, online = scaler._scale_out, scaler._online
    scaler._scale_out = lambda n: (events.append(("request", sim.env.now, n)), out(n))
    scaler._online = lambda a: (events.append(("online", sim.env.now, 1)), online(a))
    sim.run()
    requests = [t for kind, t, _ in events if kind == "request"]
    onlines = [t for kind, t, _ in events if kind == "online"]
    assert requests and onlines and onlines[0] == pytest.approx(requests[0] + 100)
    assert all(b - a >= 1000 for a, b in zip(requests, requests[1:]))


def grow_to_five(state: GroupState) -> int:
    return 5


def test_user_autoscale_policy_and_fixed_fleet_cost():
    m = Simulation(autoscaled(policy=f"{__name__}:grow_to_five"), 0).run()
    assert m["agents_peak.fleet"] == 5
    fixed = Scenario.from_dict({**autoscaled().data, "agents": [{"name": "fleet", "count": 3, "slots": 2,
                                                                  "price_per_hour": 2.0}]})
    sim = Simulation(fixed, 0)
    fm = sim.run()
    assert fm["agent_hours"] == pytest.approx(3 * sim.env.now / 3600) and fm["cost"] == pytest.approx(2 * fm["agent_hours"])


@pytest.mark.parametrize("auto, key, shown", [
    ({"min": 3, "max": 2}, "agents[0].autoscale.max", "must be >= min (3)"),
    ({"min": 1, "max": 3}, "agents[0].count", "initial size must lie in autoscale min..max (1..3)"),
    ({"max": 9, "metric": "cpu"}, "agents[0].autoscale.metric", "must be one of utilisation, queue"),
    ({"max": 9, "target": 1.5}, "agents[0].autoscale.target", "in (0, 1]"),
    ({"max": 9, "policy": "nofunction"}, "agents[0].autoscale.policy", "module:function"),
    ({"max": 9, "interval": 0}, "agents[0].autoscale.interval", "must be > 0"),
    ({"max": 9, "cooldwn": 5}, "agents[0].autoscale.cooldwn", "did you mean 'cooldown'"),
])
def test_bad_autoscale_names_the_key(auto, key, shown):
    data = copy.deepcopy(BASE)
    data["agents"][0]["autoscale"] = auto
    with pytest.raises(ScenarioError) as exc:
        Scenario.from_dict(data)
    assert exc.value.key == key and shown in str(exc.value)


def test_queue_policy_scales_out_under_a_queue():
    m = Simulation(autoscaled(metric="queue", target=1.0), 0).run()
    assert m["agents_peak.fleet"] > 4 and m["jobs_unfinished"] == 0
