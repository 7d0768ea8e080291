"""Fixtures for the reference agent's tests: in-process agents on loopback, wrappers posing as Pythons."""
from __future__ import annotations

import os
import stat
import sys

import pytest

from agent_helpers import Harness
from reference_agent.telemetry import Telemetry


@pytest.fixture
def make_agent(tmp_path):
    """make_agent(**AgentConfig overrides) -> Harness; every agent is stopped (jobs too) at teardown."""
    made: list[Harness] = []

    def _make(telemetry: Telemetry | None = None, **overrides) -> Harness:
        made.append(Harness.start(tmp_path, len(made), telemetry=telemetry, **overrides))
        return made[-1]

    yield _make
    for h in made:
        h.close()


@pytest.fixture
def agent(make_agent) -> Harness:
    return make_agent()


@pytest.fixture
def fake_python(tmp_path):
    """fake_python("3.9.18") -> path of a wrapper that answers the version probe with that
    version (release level "final" unless given, e.g. "3.14.0 candidate 1") and otherwise
    runs the real interpreter with POSED_AS set to the version, so a job can tell who ran it."""
    directory = tmp_path / "pythons"
    directory.mkdir(exist_ok=True)

    def _make(version: str, name: str | None = None) -> str:
        answer = version if " " in version else f"{version} final 0"
        path = directory / (name or f"python-{version.replace(' ', '-')}")
        path.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = "-c" ]; then echo "{answer}"; exit 0; fi\n'
            f'POSED_AS="{version}" exec {sys.executable} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)

    return _make


os.environ.setdefault("AGENT_TEST_SECRET", "must-not-reach-jobs")
