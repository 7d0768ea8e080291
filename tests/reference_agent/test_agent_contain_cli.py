"""Issue 11 flags of `reference-agent serve` and `gc`: malformed values are refused naming them."""
from __future__ import annotations

import pytest

from reference_agent.cli import build_parser, config_from_args
from reference_agent.config import AgentConfig, ConfigError


@pytest.mark.parametrize("flag, value, message", [
    ("--limit-memory", "lots", "'lots' is not a size"),
    ("--limit-memory", "0", "'0' must be >= 1 byte"),
    ("--retain-age", "forever", "'forever' is not a duration"),
    ("--retain-age", "0", "'0' must be a finite duration > 0"),
    ("--retain-age", "inf", "'inf' must be a finite duration > 0"),
    ("--retain-bytes", "-5", "'-5' must be >= 1 byte"),
    ("--retain-bytes", "5X", "'5X' is not a size"),
    ("--gc-interval", "nan", "'nan' is not a duration"),
])
def test_serve_refuses_malformed_containment_and_retention_values(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", f"{flag}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and message in err


def test_serve_flags_reach_the_configuration():
    args = build_parser().parse_args(["serve", "--limit-memory", "64MiB", "--no-cgroups", "--retain-age", "30d",
                                      "--retain-bytes", "2GiB", "--gc-interval", "90s"])
    config = config_from_args(args)
    assert (config.limit_memory, config.use_cgroups) == (64 * 1024 ** 2, False)
    assert (config.retain_age, config.retain_bytes, config.gc_interval) == (30 * 86400, 2 * 1024 ** 3, 90)
    defaults = config_from_args(build_parser().parse_args(["serve"]))
    assert (defaults.use_cgroups, defaults.retain_age, defaults.retain_bytes) == (True, None, None)


@pytest.mark.parametrize("field, value", [("limit_memory", 0), ("retain_age", 0.0), ("retain_age", float("inf")),
                                          ("retain_bytes", 0), ("gc_interval", -1.0)])
def test_config_refuses_bad_values_naming_the_option(field, value):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} "):
        AgentConfig(listen="127.0.0.1:0", **{field: value}).validate()
