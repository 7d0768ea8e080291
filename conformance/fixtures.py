"""Fixtures of the active suite: the agent under test, a fresh Env per test, the Hypothesis settings."""
from __future__ import annotations

import pytest

from conformance.env import Env
from conformance.target import Target

SESSION = pytest.StashKey[object]()   # the session object (conformance.session.ConformancePlugin)
ENV_KEY = pytest.StashKey[Env]()      # the test's Env, read by the session's report hooks


@pytest.fixture(scope="session")
def agent_target(pytestconfig) -> Target:
    """The agent under test (address, source, witness, slots, restart)."""
    return pytestconfig.stash[SESSION].target


@pytest.fixture
def env(agent_target, request):
    """A fresh Env per test: raw calls with central checks; cleans up after the test."""
    env = Env(agent_target)
    request.node.stash[ENV_KEY] = env
    yield env
    env.cleanup()


@pytest.fixture(scope="session")
def hypothesis_settings(pytestconfig):
    """The stateful test's settings: `ci` (derandomized, short, no shrinking) or `deep`."""
    from hypothesis import HealthCheck, Phase, settings

    if pytestconfig.stash[SESSION].settings.profile == "deep":
        return settings(max_examples=40, stateful_step_count=40, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))
    return settings(max_examples=6, stateful_step_count=30, deadline=None, database=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                    print_blob=False)
