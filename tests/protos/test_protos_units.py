"""One units language (protos/units.py), read the same through every entry point.

The same spellings go through the module itself, `reference-agent serve`'s flags,
`agent-conformance --max-request-bytes` and a simulator scenario; each must give the same
number, and each refused spelling must be refused everywhere with the spelling to use.
"""
from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, strategies as st

from conformance.options import OptionError, validate
from protos import units
from reference_agent.cli import build_parser, config_from_args
from simulator.scenario import Scenario, ScenarioError

BASE = {
    "agents": [{"name": "workers", "count": 2, "slots": 2}],
    "workload": {"arrivals": "poisson", "rate": 1.0, "runtime": {"dist": "exponential", "mean": 2.0}},
    "clients": {"poll_interval": 0},
    "run": {"jobs": 100, "seed": 1},
}

SIZES = [  # spelling, bytes: SI powers of ten, IEC powers of two, bits are eighths
    ("2048", 2048), ("10kB", 10_000), ("10KiB", 10_240), ("4MB", 4_000_000), ("4MiB", 4 * 2 ** 20),
    ("1.5GiB", int(1.5 * 2 ** 30)), ("2GB", 2_000_000_000), ("8000bit", 1000), ("1 MiB", 2 ** 20),
]
SIZES_REFUSED = [  # spelling, what the error must suggest
    ("10M", "'10MB'"), ("10m", "'10MiB'"), ("4K", "'4KiB'"), ("10KB", "'10kB'"), ("10mb", "'10MB'"),
    ("lots", "not a size"), ("10XB", "unknown unit"),
]
DURATIONS = [("90", 90.0), ("250ms", 0.25), ("5min", 300.0), ("2h", 7200.0), ("1d", 86400.0), ("1.5s", 1.5)]
DURATIONS_REFUSED = [("15m", "'15min'"), ("3 hours", "'3h'"), ("soon", "not a duration"), ("5M", "'5min'")]


@pytest.mark.parametrize("text, expected", SIZES)
def test_sizes_read_the_same_in_the_module_and_the_agent(text, expected):
    assert units.size(text) == expected
    config = config_from_args(build_parser().parse_args(["serve", "--limit-memory", text]))
    assert config.limit_memory == expected


@pytest.mark.parametrize("text, expected", [s for s in SIZES if 1024 <= s[1] <= 64 * 2 ** 20])
def test_sizes_read_the_same_in_the_conformance_suite(text, expected):
    assert validate({"max_request_bytes": text}).max_request_bytes == expected


@pytest.mark.parametrize("text, expected", SIZES)
def test_sizes_read_the_same_in_a_scenario(text, expected):
    data = copy.deepcopy(BASE)
    data["network"] = {"cache_capacity": text}
    assert Scenario.from_dict(data).network.cache_capacity == expected


@pytest.mark.parametrize("text, hint", SIZES_REFUSED)
def test_ambiguous_or_unknown_sizes_are_refused_everywhere_naming_the_spelling(capsys, text, hint):
    with pytest.raises(units.UnitError, match=hint):
        units.size(text)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--limit-memory", text])
    assert hint in capsys.readouterr().err and "--limit-memory" not in ""
    with pytest.raises(OptionError, match=hint):
        validate({"max_request_bytes": text})
    data = copy.deepcopy(BASE)
    data["network"] = {"cache_capacity": text}
    with pytest.raises(ScenarioError, match="cache_capacity"):
        Scenario.from_dict(data)


@pytest.mark.parametrize("text, expected", DURATIONS)
def test_durations_read_the_same_in_the_module_the_agent_and_a_scenario(text, expected):
    assert units.duration(text) == expected
    config = config_from_args(build_parser().parse_args(["serve", "--gc-interval", text]))
    assert config.gc_interval == expected
    data = copy.deepcopy(BASE)
    data["workload"]["runtime"] = text
    assert Scenario.from_dict(data).workload.runtime.mean == pytest.approx(expected)


@pytest.mark.parametrize("text, hint", DURATIONS_REFUSED)
def test_ambiguous_durations_are_refused_everywhere_naming_the_spelling(capsys, text, hint):
    with pytest.raises(units.UnitError, match=hint):
        units.duration(text)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--gc-interval", text])
    assert hint in capsys.readouterr().err
    data = copy.deepcopy(BASE)
    data["workload"]["runtime"] = text
    with pytest.raises(ScenarioError, match="runtime"):
        Scenario.from_dict(data)


@pytest.mark.parametrize("text, expected", [("1Gbit/s", 1.25e8), ("125MB/s", 1.25e8), ("1Gbps", 1.25e8),
                                            ("1GiB/s", 2 ** 30), ("inf", math.inf), ("1e6", 1e6)])
def test_bandwidths(text, expected):
    assert units.bandwidth(text) == expected
    data = copy.deepcopy(BASE)
    data["network"] = {"link_bandwidth": text}
    assert Scenario.from_dict(data).network.link_bandwidth == expected


@pytest.mark.parametrize("text, hint", [("125MB", "'125MB/s'"), ("1Gb/s", "'1Gbit/s'"), ("fast", "not a bandwidth")])
def test_bandwidths_refused(text, hint):
    with pytest.raises(units.UnitError, match=hint):
        units.bandwidth(text)


@given(n=st.integers(min_value=0, max_value=10 ** 6),
       prefix=st.sampled_from(sorted(set(units.SI_PREFIXES) | set(units.IEC_PREFIXES))),
       base=st.sampled_from(["B", "bit"]))
def test_every_prefix_and_base_scales_exactly(n, prefix, base):
    factor = {**units.SI_PREFIXES, **units.IEC_PREFIXES}[prefix] * (1 if base == "B" else 0.125)
    assert units.size(f"{n}{prefix}{base}") == pytest.approx(n * factor, rel=1e-12)
    assert units.bandwidth(f"{n}{prefix}{base}/s") == pytest.approx(n * factor, rel=1e-12)


@given(st.text(max_size=12))
def test_any_text_is_a_value_or_a_unit_error(text):
    for parse in (units.duration, units.size, units.bandwidth, units.byte_count):
        try:
            value = parse(text)
        except units.UnitError as exc:
            assert repr(text) in str(exc)   # the error names the value
        else:
            assert isinstance(value, (int, float))


def test_whole_bytes_and_non_text():
    assert units.byte_count("4MiB") == 4 * 2 ** 20
    with pytest.raises(units.UnitError, match="whole number of bytes"):
        units.byte_count("1.5B")
    for bad in (True, None, [1]):
        with pytest.raises(units.UnitError):
            units.size(bad)
