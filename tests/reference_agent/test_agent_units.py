"""Unit tests of the agent's parts: probe parsing, discovery, listen parsing, copying, journal, config."""
from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings, strategies as st

from agent_helpers import new_id
from protos.states import JobState
from protos.validation import parse_python_version
from reference_agent.config import AgentConfig, ConfigError, parse_listen
from reference_agent.interpreters import InterpreterRegistry, candidates, parse_probe
from reference_agent.journal import Journal
from reference_agent.staging import LocalSource, SourceError, checked_name, copy_fd, make_source, FsspecSource


@pytest.mark.parametrize("text,expected", [
    ("3.11.7 final 0\n", ("3.11.7", False)), ("3.9.18", ("3.9.18", False)),
    ("3.13.0 candidate 1", ("3.13.0rc1", True)), ("3.14.0 alpha 3", ("3.14.0a3", True)),
    ("3.12.0 beta 2", ("3.12.0b2", True)), ("noise\n3.10.1 final 0", ("3.10.1", False)),
    ("", None), ("Python 3.11.7", None), ("3.11", None), ("3.11.7 gamma 1", None), ("٣.11.7", None),
])
def test_parse_probe(text, expected):
    assert parse_probe(text) == expected


def _exe(path, body="#!/bin/sh\necho '3.10.2 final 0'\n"):
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_discovery_order_and_names(tmp_path):
    bin1, bin2 = tmp_path / "bin1", tmp_path / "bin2"
    bin1.mkdir()
    bin2.mkdir()
    for name in ("python3", "python3.10", "python3-config", "python3.10m", "python", "pythonista"):
        _exe(bin1 / name)
    _exe(bin2 / "python3.9")
    (bin2 / "python3.8").write_text("not executable")
    explicit = _exe(tmp_path / "mine")
    found = candidates([explicit], include_running=False, path_env=f"{bin1}{os.pathsep}{bin2}")
    assert found == [(explicit, "--python"), (str(bin1 / "python3"), "PATH"), (str(bin1 / "python3.10"), "PATH"),
                     (str(bin2 / "python3.9"), "PATH")]


def test_registry_choice_skips_prereleases_and_broken(tmp_path):
    a = _exe(tmp_path / "a", "#!/bin/sh\necho '3.12.1 final 0'\n")
    b = _exe(tmp_path / "b", "#!/bin/sh\necho '3.13.0 candidate 2'\n")
    c = _exe(tmp_path / "c", "#!/bin/sh\nexit 3\n")
    d = _exe(tmp_path / "d", "#!/bin/sh\necho '3.12.1 final 0'\n")
    reg = InterpreterRegistry([a, b, c, d], include_running=False, include_path=False, probe_timeout=5)
    assert [i.version for i in reg.available()] == ["3.12.1", "3.13.0rc2", "3.12.1"]
    assert reg.rejected == [c]
    assert reg.choose([parse_python_version(">=3.12")]).path == a
    assert reg.choose([parse_python_version("3.13")]) is None


def test_probe_timeout_rejects_a_hanging_interpreter(tmp_path):
    slow = _exe(tmp_path / "slow", "#!/bin/sh\nexec sleep 30\n")
    reg = InterpreterRegistry([slow], include_running=False, include_path=False, probe_timeout=0.3)
    assert reg.available() == [] and reg.rejected == [slow]


@pytest.mark.parametrize("value,expected", [("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:50051", ("[::1]", 50051)),
                                            ("localhost:65535", ("localhost", 65535))])
def test_parse_listen_good(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["", ":80", "host", "host:", "host:-1", "host:65536", "[::1:80", "h:8x"])
def test_parse_listen_bad(value):
    with pytest.raises(ConfigError, match="--listen"):
        parse_listen(value)


@pytest.mark.parametrize("field,value,needle", [
    ("slots", 0, "--slots"), ("job_timeout", 0, "--job-timeout"), ("max_request_bytes", 10, "--max-request-bytes"),
    ("tls_key", "k.pem", "--tls-cert and --tls-key"), ("tls_client_ca", "ca.pem", "--tls-client-ca"),
    ("pythons", ("/no/such/python",), "--python"), ("limit_open_files", 0, "--limit-open-files"),
    ("source", "", "--source"), ("metrics_port", 65536, "--metrics-port"),
])
def test_config_validation_names_the_option(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        AgentConfig(**{field: value}).validate()


def test_checked_name_refuses_non_uuids():
    assert checked_name("AAAAAAAA-0000-0000-0000-000000000000") == "aaaaaaaa-0000-0000-0000-000000000000"
    for bad in ("..", "../x", "a/b", ""):
        with pytest.raises(ValueError):
            checked_name(bad)


@settings(max_examples=20, deadline=None)
@given(data=st.binary(max_size=300_000))
def test_copy_fd_exact_bytes(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("copy")
    (d / "src").write_bytes(data)
    src = os.open(d / "src", os.O_RDONLY)
    dst = os.open(d / "dst", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        assert copy_fd(src, dst) == len(data)
    finally:
        os.close(src)
        os.close(dst)
    assert (d / "dst").read_bytes() == data


def test_local_source_refuses_symlinks_and_non_files(tmp_path):
    src = LocalSource(tmp_path / "src")
    target = tmp_path / "outside"
    target.write_text("secret")
    link, sub = new_id(), new_id()
    os.symlink(target, src.directory / link)
    (src.directory / sub).mkdir()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        for name, why in ((link, "symlink"), (sub, "not a regular file"), (new_id(), "No such file")):
            with pytest.raises(SourceError, match=why):
                src.copy_to(name, out)
    finally:
        os.close(out)


def test_make_source_kinds(tmp_path):
    assert isinstance(make_source(str(tmp_path)), LocalSource)
    assert isinstance(make_source(f"file://{tmp_path}"), LocalSource)
    assert isinstance(make_source("memory://bucket"), FsspecSource)


def test_journal_round_trip(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    job = new_id()
    seq = j.insert_job(job=job, files=["a", "a"], requirements=["", ">=3"], interpreter="/py", python_version="3.11.7",
                       state=JobState.WAIT, submitted=1.0, workdir="/w", stdout="/o", stderr="/e")
    j.update_job(job, state=int(JobState.RUN), pid=42, started=2.0)
    with pytest.raises(ValueError):
        j.update_job(job, files="[]")
    j.add_staged(job, "f2")
    j.add_staged(job, "f1")
    j.add_staged(job, "f2")
    j.close()
    again = Journal(tmp_path / "j.sqlite3", readonly=True)
    row = again.job(job)
    assert (row.seq, row.files, row.requirements, row.state, row.pid) == (seq, ("a", "a"), ("", ">=3"), 1, 42)
    assert again.staged_for(job) == ["f2", "f1"]
