"""pytest plugin of the conformance suite: options only, inactive unless --agent-target, --agent-cmd or
--agent-conformance is given (every pytest run in this environment loads it)."""
from __future__ import annotations

GROUP = "agent-conformance"
TARGET = "--agent-target"
EMBEDDED = "--agent-conformance"
AGENT_CMD = "--agent-cmd"
SOURCE_DIR = "--agent-source-dir"
PUT_CMD = "--agent-put-cmd"
WITNESS_DIR = "--agent-witness-dir"
SLOTS = "--agent-slots"
RESTART_CMD = "--agent-restart-cmd"
PYTHON_VERSION = "--agent-python-version"
LEVEL = "--agent-level"
TIME_SCALE = "--agent-time-scale"
TLS_CA = "--agent-tls-ca"
TLS_CERT = "--agent-tls-cert"
TLS_KEY = "--agent-tls-key"
REPORT_JSON = "--agent-report-json"
EXPECTED = "--agent-expected-failures"
UPDATE_EXPECTED = "--agent-update-expected"
PROFILE = "--agent-hypothesis-profile"
MAX_REQUEST = "--agent-max-request-bytes"

PROFILES = ("ci", "deep")
LEVELS = ("must", "should")


def dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def pytest_addhooks(pluginmanager) -> None:
    from conformance import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser) -> None:
    group = parser.getgroup(GROUP, "Agent protocol v1 conformance suite (agent-conformance)")
    group.addoption(TARGET, metavar="HOST:PORT", help="test the agent at this address")
    group.addoption(EMBEDDED, action="store_true",
                    help="test the reference agent, started by the suite (when no target or command is given)")
    group.addoption(AGENT_CMD, metavar="CMD",
                    help="start (and restart) the agent with this command; placeholders {listen} {source} "
                         "{state_dir} {slots}; it must print 'listening on HOST:PORT'")
    group.addoption(SOURCE_DIR, metavar="DIR", help="folder that the agent reads as its file source")
    group.addoption(PUT_CMD, metavar="CMD", help="command that puts a file into the source: {path} {uuid}")
    group.addoption(WITNESS_DIR, metavar="DIR", help="folder shared with the agent's jobs (same path on both sides)")
    group.addoption(SLOTS, metavar="N", help="the agent's slot count (enables the scheduling checks)")
    group.addoption(RESTART_CMD, metavar="CMD", help="command that restarts the agent (enables AGT-DUR-1)")
    group.addoption(PYTHON_VERSION, metavar="SPEC", default=None,
                    help="a python_version the agent can satisfy (default: 3)")
    group.addoption(LEVEL, metavar="must|should", default="must", help="requirements to check (default: must)")
    group.addoption(TIME_SCALE, metavar="X", default="1", help="multiply every deadline and interval (default: 1)")
    group.addoption(TLS_CA, metavar="FILE", help="CA certificate (PEM): connect with TLS")
    group.addoption(TLS_CERT, metavar="FILE", help="client certificate (PEM) for mutual TLS")
    group.addoption(TLS_KEY, metavar="FILE", help="client key (PEM) for mutual TLS")
    group.addoption(REPORT_JSON, metavar="FILE", help="write the per-requirement JSON report here")
    group.addoption(EXPECTED, metavar="FILE", help="expected failures: lines 'ID  # message prefix'")
    group.addoption(UPDATE_EXPECTED, action="store_true", help="rewrite the expected-failures file from this run")
    group.addoption(MAX_REQUEST, metavar="N",
                    help="the agent's request size limit in bytes: a larger request must get RESOURCE_EXHAUSTED")
    group.addoption(PROFILE, metavar="ci|deep", default="ci",
                    help="Hypothesis profile of the stateful test (ci: derandomized and short)")


def is_active(config) -> bool:
    opt = config.option
    return bool(getattr(opt, dest(TARGET), None) or getattr(opt, dest(AGENT_CMD), None)
                or getattr(opt, dest(EMBEDDED), False))


MARKER_HELP = "requirement(*ids, needs=()): the PROTOCOL-V1 requirement IDs a conformance test checks"


def pytest_configure(config) -> None:
    # The marker is registered always (as the fakes plugin does) so that importing the suite's
    # modules under --strict-markers works; nothing else happens without the suite's options.
    config.addinivalue_line("markers", MARKER_HELP)
    if not is_active(config):
        return
    from conformance import fixtures  # imported only when the suite runs
    from conformance.session import PLUGIN_NAME, ConformancePlugin

    config.pluginmanager.register(ConformancePlugin(config), PLUGIN_NAME)
    config.pluginmanager.register(fixtures, "agent-conformance-fixtures")
