"""The server's defences on the command line (issue 18.1): each flag reaches AgentConfig, each
bad value is refused naming it, and the grpc channel arguments follow the config."""
from __future__ import annotations

import pytest

from reference_agent.cli import build_parser, config_from_args
from reference_agent.config import AgentConfig, ConfigError
from reference_agent.transport import connection_cap, fd_reserve, server_options


def _config(tmp_path, *flags: str) -> AgentConfig:
    args = build_parser().parse_args(["serve", "--state-dir", str(tmp_path / "state"),
                                      "--source", str(tmp_path), *flags])
    return config_from_args(args)


def test_server_flags_reach_the_config(tmp_path):
    config = _config(tmp_path, "--work-threads", "3", "--max-queued-calls", "0", "--request-timeout", "250ms",
                     "--max-connections", "50", "--max-streams-per-connection", "7", "--max-calls", "99",
                     "--max-open-streams", "2", "--keepalive-time", "30s", "--keepalive-timeout", "5s",
                     "--min-client-ping-interval", "1min", "--max-connection-idle", "2min",
                     "--max-connection-age", "2h", "--max-connection-age-grace", "10s")
    assert (config.work_threads, config.max_queued_calls, config.request_timeout) == (3, 0, 0.25)
    assert (config.max_connections, config.max_streams_per_connection, config.max_calls) == (50, 7, 99)
    assert (config.max_open_streams, config.keepalive_time, config.keepalive_timeout) == (2, 30, 5)
    assert (config.min_client_ping_interval, config.max_connection_idle) == (60, 120)
    assert (config.max_connection_age, config.max_connection_age_grace) == (7200, 10)
    options = dict(server_options(config, 50))
    assert options["grpc.max_concurrent_streams"] == 7
    assert options["grpc.max_allowed_incoming_connections"] == 50
    assert options["grpc.keepalive_time_ms"] == 30000 and options["grpc.keepalive_timeout_ms"] == 5000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 60000
    assert options["grpc.max_connection_idle_ms"] == 120000
    assert options["grpc.max_connection_age_ms"] == 7200000 and options["grpc.max_connection_age_grace_ms"] == 10000


def test_defaults_without_flags(tmp_path):
    config = _config(tmp_path)
    assert config == AgentConfig(source=str(tmp_path), state_dir=str(tmp_path / "state"),
                                 slots=config.slots).validate()
    assert config.work_threads is None and config.request_timeout == 10.0


@pytest.mark.parametrize("flag,value", [("--work-threads", "0"), ("--max-connections", "0"),
                                        ("--request-timeout", "0s"), ("--keepalive-time", "0ms"),
                                        ("--max-calls", "many"), ("--max-connection-idle", "inf")])
def test_bad_values_are_refused_naming_them(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exited:
        _config(tmp_path, flag, value)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and value in err


@pytest.mark.parametrize("field,value", [("max_queued_calls", -1), ("max_open_streams", 0),
                                         ("request_timeout", 0.0), ("max_connection_age", 10 ** 9)])
def test_bad_config_values_name_the_option(tmp_path, field, value):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} {value!r}"):
        AgentConfig(source=str(tmp_path), state_dir=str(tmp_path / "s"), **{field: value}).validate()


def test_the_connection_cap_leaves_descriptors_for_jobs():
    assert connection_cap(4096, 2, 8, open_files=1024) == 1024 - fd_reserve(2, 8)
    assert connection_cap(100, 2, 8, open_files=1_000_000) == 100
    assert connection_cap(100, 2, 8, open_files=10) == 1


def test_serve_runs_on_the_c_allocator_in_the_same_process(tmp_path):
    """`serve` re-executes itself once with PYTHONMALLOC=malloc (memory after a flood of calls
    goes back to the system); the pid stays the one its launcher started."""
    from protos import launcher

    (tmp_path / "source").mkdir()
    agent = launcher.reference_agent(tmp_path / "source", tmp_path / "state", 1, ["--no-path-pythons", "--quiet"],
                                     cwd=tmp_path, startup_timeout=60)
    agent.start()
    try:
        environ = open(f"/proc/{agent.pid}/environ", "rb").read().split(b"\0")
        assert b"PYTHONMALLOC=malloc" in environ
        cmdline = open(f"/proc/{agent.pid}/cmdline", "rb").read().split(b"\0")
        assert b"serve" in cmdline and b"reference_agent" in cmdline
    finally:
        agent.stop(10)


def test_an_allocator_set_by_the_operator_is_kept(tmp_path):
    from protos import launcher

    (tmp_path / "source").mkdir()
    agent = launcher.reference_agent(tmp_path / "source", tmp_path / "state", 1, ["--no-path-pythons", "--quiet"],
                                     cwd=tmp_path, startup_timeout=60,
                                     env={**__import__("os").environ, "PYTHONMALLOC": "pymalloc"})
    agent.start()
    try:
        environ = open(f"/proc/{agent.pid}/environ", "rb").read().split(b"\0")
        assert b"PYTHONMALLOC=pymalloc" in environ
    finally:
        agent.stop(10)
