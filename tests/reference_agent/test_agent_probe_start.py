"""Issue 22.8 and 18.3: interpreter probing is off the start path and cached across restarts,
and a probe the OS refuses is retried, never a traceback."""
from __future__ import annotations

import os
import stat
import sys
import threading

import pytest

from agent_helpers import Harness
from protos.states import JobState
from reference_agent import interpreters
from reference_agent.interpreters import InterpreterRegistry
from shared_helpers import new_id

pytestmark = pytest.mark.timeout(60)  # probing on the start path would hang the first test


def _slow_python(directory, version: str, gate, count) -> str:
    """A wrapper whose version probe waits for `gate` to exist and counts its runs in `count`."""
    path = directory / f"python-{version}"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then echo x >> "{count}"; while [ ! -e "{gate}" ]; do sleep 0.01; done; '
        f'echo "{version} final 0"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_agent_listens_while_three_interpreters_are_probed_and_restarts_without_probing(tmp_path):
    interpreters._probe_cache.clear()
    gate, count = tmp_path / "gate", tmp_path / "probes"
    pythons = tuple(_slow_python(tmp_path, v, gate, count) for v in ("3.10.1", "3.11.2", "3.12.3"))
    agent = Harness.start(tmp_path, pythons=pythons, include_running=False)  # returns: it listens
    try:
        job, entry = new_id(), agent.script("print('ok')")
        agent.client.stage_in(job, [entry])
        done = {}
        submit = threading.Thread(target=lambda: done.setdefault("state", agent.client.run(job, [entry])))
        submit.start()  # a first RunJob waits for the probes...
        gate.touch()    # ...which end now
        submit.join(30)
        assert done["state"] in (JobState.WAIT, JobState.RUN, JobState.DONE)
        assert agent.row(job).python_version == "3.12.3"
    finally:
        agent.close()
    probes = count.read_text().count("x")
    assert probes == 3
    interpreters._probe_cache.clear()  # a new process: only the state directory remembers
    gate.unlink()
    agent = Harness.start(tmp_path, 1, pythons=pythons, include_running=False, state_dir=tmp_path / "state0")
    try:
        assert [i.version for i in agent.core.interpreters.available()] == ["3.10.1", "3.11.2", "3.12.3"]
    finally:
        agent.close()
    assert count.read_text().count("x") == probes  # nothing probed again: the gate is gone


def test_a_refused_probe_is_retried_and_said_in_one_line(tmp_path, monkeypatch):
    interpreters._probe_cache.clear()
    real_run = interpreters.subprocess.run
    refusals = {"left": 1}

    def run(*args, **kwargs):
        if refusals["left"]:
            refusals["left"] -= 1
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(interpreters.subprocess, "run", run)
    logged = []
    registry = InterpreterRegistry([sys.executable], include_running=False, include_path=False,
                                   log=lambda kind, **fields: logged.append(fields))
    registry.RETRY_SECONDS = 0.0
    assert registry.available() == []
    assert registry.failure and "could not be started" in registry.failure and "\n" not in registry.failure
    assert len(logged) == 1
    assert [i.path for i in registry.available()] == [os.path.abspath(sys.executable)]  # retried
    assert registry.failure is None
