"""Hook specifications of the conformance plugin (for tools that embed the suite)."""
from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_agent_conformance_source(config):
    """Return an object with put(uuid, data) (and optionally delete(uuid), can_delete) that puts test
    inputs into the agent's file source, instead of --source-dir / --put-cmd. Used to test in-process
    fakes whose source lives in memory."""
