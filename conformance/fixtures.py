"""Fixtures of the active suite: the agent under test, a fresh Env per test, the Hypothesis settings."""
from __future__ import annotations

import pytest

from conformance.env import Env
from conformance.target import Target


def _plugin(config):
    from conformance.session import PLUGIN_NAME

    return config.pluginmanager.get_plugin(PLUGIN_NAME)


@pytest.fixture(scope="session")
def agent_target(pytestconfig) -> Target:
    """The agent under test (address, source, witness, slots, restart)."""
    return _plugin(pytestconfig).target


@pytest.fixture
def env(agent_target, request):
    """A fresh Env per test: raw calls with central checks; cleans up after the test."""
    from conformance.session import ENV_KEY

    env = Env(agent_target)
    request.node.stash[ENV_KEY] = env
    yield env
    env.cleanup()


@pytest.fixture(scope="session")
def hypothesis_settings(pytestconfig):
    """The stateful test's settings: `ci` (derandomized, short, no shrinking) or `deep`."""
    from hypothesis import HealthCheck, Phase, settings

    if _plugin(pytestconfig).settings.profile == "deep":
        return settings(max_examples=40, stateful_step_count=40, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))
    return settings(max_examples=6, stateful_step_count=30, deadline=None, database=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                    print_blob=False)
