"""pytest plugin of the fakes (fixtures `fake_agent` and `legal_agent`), loaded through the pytest11 entry point."""
from __future__ import annotations

import pytest

MARKER = "fake_agent"
MARKER_HELP = (
    "fake_agent(**config): configure the fake_agent fixture; keywords go to fakes.FakeBackend "
    "(python_versions, progression, clock, source, sleep, habits, extensions, watch_tick); "
    "extensions=None serves no AgentExtensions service (a v1 agent, to test a client's fallback)"
)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


@pytest.fixture
def fake_agent(request):
    """A fakes.FakeAgent serving on a free loopback port; `fake_agent.address` is 'host:port'.

    Function scope: a fresh agent (and port) for every test. Configure it with
    @pytest.mark.fake_agent(python_versions=[...], progression=...); it offers the extension
    (outcome, cancel, watch) unless @pytest.mark.fake_agent(extensions=None) or a subset."""
    from fakes.agent import FakeAgent  # imported here so that loading the plugin costs nothing

    marker = request.node.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        raise pytest.UsageError("@pytest.mark.fake_agent takes keyword arguments only")
    agent = FakeAgent(**(marker.kwargs if marker is not None else {}))
    with agent.serve():
        yield agent


@pytest.fixture(scope="session")
def legal_agent():
    """A fakes.legal.LegalAgent serving on a free loopback port for the whole session; each
    `with legal_agent.play(behaviour) as play:` starts from a clean state. Session scope, so
    that a Hypothesis test (@given(behaviour=fakes.legal.behaviours())) can use it."""
    from fakes.legal import LegalAgent

    agent = LegalAgent()
    with agent.serve(max_workers=16):
        yield agent
