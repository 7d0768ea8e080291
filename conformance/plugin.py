"""pytest plugin of the conformance suite: options only, inactive unless one of its agent options is given
or the CLI hands it a session object (every pytest run in this environment loads it)."""
from __future__ import annotations

from conformance.options import BY_FIELD, OPTIONS
from conformance.violations import MARKER_HELP

GROUP = "agent-conformance"
EMBEDDED = "--agent-conformance"
PLUGIN_NAME = "agent-conformance-session"
SESSION_ATTR = "is_agent_conformance_session"

# The pytest flags, named once (tests and tools refer to them).
TARGET, AGENT_CMD = BY_FIELD["target"].pytest, BY_FIELD["agent_cmd"].pytest
SOURCE_DIR, WITNESS_DIR = BY_FIELD["source_dir"].pytest, BY_FIELD["witness_dir"].pytest
LEVEL, REPORT_JSON = BY_FIELD["level"].pytest, BY_FIELD["report_json"].pytest


def dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def pytest_addhooks(pluginmanager) -> None:
    from conformance import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser) -> None:
    group = parser.getgroup(GROUP, "Agent protocol v1 conformance suite (agent-conformance)")
    group.addoption(EMBEDDED, action="store_true",
                    help="test the reference agent, started by the suite (when no target or command is given)")
    for opt in OPTIONS:
        if opt.flag:
            group.addoption(opt.pytest, action="store_true", help=opt.help)
        else:
            group.addoption(opt.pytest, metavar=opt.metavar, default=opt.default, help=opt.help)


def session_of(config):
    """The suite's session object when one is registered (by the CLI or by pytest_configure)."""
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, SESSION_ATTR, False):
            return plugin
    return None


def _asked(config) -> bool:
    opt = config.option
    return bool(getattr(opt, dest(TARGET), None) or getattr(opt, dest(AGENT_CMD), None)
                or getattr(opt, dest(EMBEDDED), False))


def is_active(config) -> bool:
    return _asked(config) or session_of(config) is not None


def pytest_configure(config) -> None:
    # The marker is registered always (as the fakes plugin does) so that importing the suite's
    # modules under --strict-markers works; nothing else happens without the suite's options.
    config.addinivalue_line("markers", MARKER_HELP)
    if session_of(config) is not None or not _asked(config):
        return
    from conformance.session import ConformancePlugin, settings_from  # imported only when the suite runs

    config.pluginmanager.register(ConformancePlugin(settings_from(config)), PLUGIN_NAME)
