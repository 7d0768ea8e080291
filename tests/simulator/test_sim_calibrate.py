"""Calibration: the fragment a scenario accepts, its figures file, the CLI, and a real measurement."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from simulator.real import calibrate as cal
from simulator.cli import main
from simulator.real.fleet import Fleet
from simulator.scenario import Scenario
from simulator.real.turnover import gaps

BASE = {
    "agents": [{"name": "local", "count": 4, "slots": 2}],
    "workload": {"arrivals": "poisson", "rate": 2.0, "runtime": {"dist": "fixed", "value": 1.0}},
    "clients": {"poll_interval": "0.5s"},
    "run": {"jobs": 10},
}


def fixed(**over) -> cal.Calibration:
    values = dict(target="127.0.0.1:1", poll_rtt=0.0005, poll_p50=0.0004, poll_p99=0.001, stage_new=0.004,
                  stage_cached=0.0015, run_submit=0.002, start_overhead=0.05, bare_spawn=0.04, done_delay=0.02,
                  run_to_running=0.006, turnover=0.09, staging_bandwidth=5e8, copy_bandwidth=1e9)
    values.update(over)
    return cal.Calibration(**values)


def test_fragment_has_only_keys_the_scenario_loader_accepts(tmp_path):
    c = fixed()
    toml_path, json_path = c.write(tmp_path / "calibrated.toml")
    fragment = cal.read_fragment(toml_path)
    assert set(fragment) == {"clients", "network"}
    with_net = {**BASE, "network": {"cache": True}}
    merged = Scenario.from_dict({**with_net, **{k: {**with_net.get(k, {}), **v} for k, v in fragment.items()}})
    assert merged.clients.rpc_latency == pytest.approx((0.004 + 0.002) / 2, rel=1e-3)
    assert merged.clients.rpc_cost_poll == pytest.approx(0.0005, rel=1e-3)
    assert merged.clients.rpc_cost_stage == pytest.approx(0.004, rel=1e-3)
    assert merged.network.source_bandwidth == pytest.approx(5e8, rel=1e-3)
    assert merged.network.source_latency == pytest.approx(0.0025, rel=1e-3)
    # merge() is what replay uses: network keys only where the scenario stages files
    assert "network" not in cal.merge(BASE, c)
    assert Scenario.from_dict(cal.merge(BASE, c)).network.enabled is False
    off = cal.merge({**BASE, "network": {"enabled": False}}, c)
    assert off["network"] == {"enabled": False}
    assert Scenario.from_dict(cal.merge(with_net, c)).network.source_latency == pytest.approx(0.0025, rel=1e-3)
    figures = json.loads(json_path.read_text())
    assert figures["service_overhead"] == pytest.approx(0.09)
    assert "launch_delay = " in toml_path.read_text()


def test_model_quantities():
    c = fixed()
    assert c.spawn_delay == pytest.approx(0.006 - 0.002 + 0.00025)
    assert c.launch_delay == pytest.approx(0.05 - 0.002 + 0.00025)
    assert c.service_overhead == pytest.approx(0.09)                      # the measured turnover
    assert fixed(turnover=0.0).service_overhead == pytest.approx(c.launch_delay + 0.02)
    assert fixed(run_to_running=0.0).spawn_delay == 0.0


def test_load_round_trip_and_malformed_figures(tmp_path):
    path, side = fixed().write(tmp_path / "c.toml")
    assert cal.Calibration.load(path).to_dict() == fixed(when=cal.Calibration.load(path).when,
                                                          host=cal.Calibration.load(path).host,
                                                          load_average=cal.Calibration.load(path).load_average,
                                                          cpus=cal.Calibration.load(path).cpus).to_dict()
    good = json.loads(side.read_text())
    for bad, words in (("not json", "not a calibration file"), (json.dumps({**good, "turnover": -1}), "turnover"),
                       (json.dumps({**good, "done_delay": "soon"}), "done_delay"),
                       (json.dumps({k: v for k, v in good.items() if k != "poll_rtt"}), "poll_rtt"),
                       (json.dumps([1, 2]), "not a calibration file")):
        side.write_text(bad)
        with pytest.raises(cal.CalibrationError, match=words):
            cal.Calibration.load(path)
    side.unlink()
    with pytest.raises(cal.CalibrationError, match="is missing"):
        cal.Calibration.load(path)


# --- slot gaps -------------------------------------------------------------------------------------

def test_gaps_by_hand():
    # two slots; job 2 takes the slot job 1 frees first (at 1.0), job 3 the one job 0 frees (at 2.0)
    slots, g = gaps([(0.0, 2.0), (0.1, 1.0), (1.1, 3.0), (2.2, 2.5)])
    assert slots == 2
    assert g == pytest.approx([0.1, 0.2])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.lists(st.floats(0.05, 3.0), min_size=1, max_size=30), st.floats(0.0, 0.3))
def test_gaps_recovers_a_constant_turnover(slots, runtimes, gap):
    """A FIFO agent whose slots stay idle `gap` between jobs: gaps() finds exactly that gap."""
    free = [i * 1e-3 for i in range(slots)]       # the first jobs start at once (staggered by 1 ms)
    intervals = []
    for k, r in enumerate(runtimes):
        t = min(free)
        i = free.index(t)
        start = t if k < slots else t + gap
        intervals.append((start, start + r))
        free[i] = start + r
    seen, g = gaps(intervals)
    assert seen == min(slots, len(runtimes))
    assert len(g) == len(runtimes) - seen
    assert all(math.isclose(x, gap, abs_tol=1e-9) for x in g), g


# --- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, named", [
    (["--out", "x.json"], "'x.json'"),
    (["--target", "foo", "--out", "c.toml"], "'foo'"),
    (["--target", "127.0.0.1", "--out", "c.toml"], "'127.0.0.1'"),
    (["--target", "127.0.0.1:0", "--out", "c.toml"], "'127.0.0.1:0'"),
    (["--target", "127.0.0.1:70000", "--out", "c.toml"], "'127.0.0.1:70000'"),
    (["--target", ":50051", "--out", "c.toml"], "':50051'"),
    (["--target", "127.0.0.1:5x", "--out", "c.toml"], "'127.0.0.1:5x'"),
    (["--target", "127.0.0.1:50051", "--out", "c.toml"], "--source-dir"),
    (["--target", "127.0.0.1:50051", "--source-dir", "no/such/dir", "--out", "c.toml"], "'no/such/dir'"),
    (["--source-dir", ".", "--out", "c.toml"], "--source-dir"),
    (["--slots", "0", "--out", "c.toml"], "'0'"),
    (["--slots", "two", "--out", "c.toml"], "'two'"),
])
def test_cli_usage_errors_name_the_value(argv, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["calibrate"] + argv)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_cli_out_is_a_directory(tmp_path, capsys):
    (tmp_path / "d.toml").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--out", str(tmp_path / "d.toml")])
    assert exc.value.code == 2 and "is a directory" in capsys.readouterr().err


def test_cli_unreachable_target(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--target", "127.0.0.1:1", "--source-dir", str(tmp_path), "--out", str(tmp_path / "c.toml")])
    assert exc.value.code == 2 and "127.0.0.1:1" in capsys.readouterr().err


def test_calibrate_a_running_agent_and_load_the_fragment(tmp_path, capsys):
    """The real measurement, quick: a reference agent process, then the fragment in a scenario."""
    source = tmp_path / "source"
    with Fleet([("a", 2)], source, tmp_path / "agent") as fleet:
        rc = main(["calibrate", "--target", fleet.addresses[0], "--source-dir", str(source),
                   "--out", str(tmp_path / "cal.toml"), "--quick"])
    assert rc == 0
    assert "calibrated 127.0.0.1:" in capsys.readouterr().out
    c = cal.Calibration.load(tmp_path / "cal.toml")
    for name in ("poll_rtt", "stage_new", "stage_cached", "run_submit", "start_overhead", "done_delay",
                 "run_to_running", "turnover", "staging_bandwidth"):
        assert getattr(c, name) > 0, name
    assert c.poll_rtt < c.start_overhead          # a poll is far cheaper than starting Python
    assert c.spawn_delay < c.launch_delay
    assert c.bench["turnover"]["slots_seen"] == [2]
    data = {**BASE, "network": {"cache": True}}
    merged = cal.read_fragment(tmp_path / "cal.toml")
    sc = Scenario.from_dict({**data, "clients": {**data["clients"], **merged["clients"]},
                             "network": {**data["network"], **merged["network"]}})
    assert sc.network.source_bandwidth == pytest.approx(c.staging_bandwidth, rel=1e-3)
