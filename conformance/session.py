"""The active suite: starts or reaches the agent, gives tests their fixtures, turns outcomes into verdicts."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from conformance import SUITE_VERSION, expected, plugin, report
from conformance.env import Env
from conformance.jobs import Witness
from conformance.launcher import REFERENCE_CMD, AgentProcess, LaunchError
from conformance.options import OptionError, Settings, validate
from conformance.source import CommandSource, DirSource
from conformance.target import Target, Timing, read_optional
from conformance.violations import MARKER, AgentUnavailable, REGISTRY, find_violation
from protos.requirements import REQUIREMENTS, Level

ENV_KEY = pytest.StashKey[Env]()
PLUGIN_NAME = "agent-conformance-session"
DEFAULT_SLOTS = 2
REFERENCE_MAX_REQUEST = 4 * 1024 * 1024  # the reference agent's default --max-request-bytes

NEEDS = {
    "witness": "needs --witness-dir (a folder that the agent's jobs can write and the suite can read)",
    "slots": "needs --slots N (the agent's slot count)",
    "restart": "needs --restart-cmd, or an agent that the suite starts itself (--agent-cmd or embedded)",
    "sigkill": "needs an agent that the suite starts itself (--agent-cmd or embedded) to SIGKILL it",
    "delete": "needs --source-dir (to remove or replace a file in the agent's source)",
    "symlink": "needs --source-dir (to place a symlink in the agent's source)",
    "limit": "needs --max-request-bytes N (the agent's request size limit)",
}

_FIELDS = {"target": plugin.TARGET, "agent_cmd": plugin.AGENT_CMD, "source_dir": plugin.SOURCE_DIR,
           "put_cmd": plugin.PUT_CMD, "witness_dir": plugin.WITNESS_DIR, "slots": plugin.SLOTS,
           "restart_cmd": plugin.RESTART_CMD, "python_version": plugin.PYTHON_VERSION, "level": plugin.LEVEL,
           "time_scale": plugin.TIME_SCALE, "tls_ca": plugin.TLS_CA, "tls_cert": plugin.TLS_CERT,
           "tls_key": plugin.TLS_KEY, "report_json": plugin.REPORT_JSON, "expected": plugin.EXPECTED,
           "update_expected": plugin.UPDATE_EXPECTED, "profile": plugin.PROFILE,
           "max_request_bytes": plugin.MAX_REQUEST}


def settings_from(config) -> Settings:
    raw = {name: config.getoption(plugin.dest(opt)) for name, opt in _FIELDS.items()}
    hooked = bool(config.pluginmanager.hook.pytest_agent_conformance_source.get_hookimpls())
    try:
        return validate(raw, source_from_hook=hooked)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None


class ConformancePlugin:
    """Registered by conformance.plugin when the suite is asked for; owns the target for the session."""

    def __init__(self, config):
        self.config = config
        self.settings = settings_from(config)
        self.expected: dict[str, list[str]] = {}
        if self.settings.expected and Path(self.settings.expected).is_file():
            try:
                self.expected = expected.load(self.settings.expected)
            except expected.ExpectedError as exc:
                raise pytest.UsageError(str(exc)) from None
        self.records: dict[str, report.TestRecord] = {}
        self.target: Target | None = None
        self.process: AgentProcess | None = None
        self.tmp: str | None = None
        self.result: dict[str, report.Verdict] = {}

    # --- the agent -----------------------------------------------------------------------------------

    def pytest_sessionstart(self, session) -> None:
        s = self.settings
        timing = Timing(s.time_scale)
        self.tmp = tempfile.mkdtemp(prefix="agent-conformance-")
        tmp = Path(self.tmp)
        self._keep_hypothesis_home(tmp / "hypothesis")
        witness_dir, slots = s.witness_dir, s.slots
        if s.owned:
            source_dir = s.source_dir or str(tmp / "source")
            witness_dir = witness_dir or str(tmp / "witness")
            slots = slots or DEFAULT_SLOTS
            for d in (source_dir, witness_dir, tmp / "state"):
                Path(d).mkdir(parents=True, exist_ok=True)
            self.process = AgentProcess(s.agent_cmd or REFERENCE_CMD, source=source_dir, state_dir=str(tmp / "state"),
                                        slots=slots, startup_timeout=timing.restart, log_path=str(tmp / "agent.log"))
            try:
                address = self.process.start()
            except LaunchError as exc:
                pytest.exit(f"agent-conformance: {exc}", returncode=2)
            source = s.put_cmd and CommandSource(s.put_cmd) or DirSource(source_dir)
        else:
            address = s.target
            source = DirSource(s.source_dir) if s.source_dir else CommandSource(s.put_cmd) if s.put_cmd else None
        source = self.config.hook.pytest_agent_conformance_source(config=self.config) or source
        tls = None
        if s.tls_ca:
            tls = (read_optional(s.tls_ca), read_optional(s.tls_cert), read_optional(s.tls_key))
        self.target = Target(address, source, timing, Witness(witness_dir) if witness_dir else None, slots,
                             s.python_version, self.process, s.restart_cmd, tls)
        self.target.max_request_bytes = s.max_request_bytes or (
            REFERENCE_MAX_REQUEST if s.owned and not s.agent_cmd else None)
        try:
            self.target.wait_reachable(timing.restart)
        except AgentUnavailable as exc:
            pytest.exit(f"agent-conformance: {exc}", returncode=2)

    def _keep_hypothesis_home(self, directory: Path | None) -> None:
        """Hypothesis caches data in ./.hypothesis by default; the suite must not write into the
        user's folder. The previous setting is restored at the end (the suite may run in-process)."""
        import hypothesis.configuration as hc

        if directory is not None:
            self._hypothesis_home = getattr(hc, "__hypothesis_home_directory", None)
            hc.set_hypothesis_home_dir(str(directory))
        elif hasattr(self, "_hypothesis_home"):
            hc.set_hypothesis_home_dir(self._hypothesis_home)

    def pytest_unconfigure(self, config) -> None:
        self._keep_hypothesis_home(None)
        if self.target is not None:
            self.target.close()
        if self.process is not None:
            self.process.stop()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- per test -----------------------------------------------------------------------------------

    def pytest_runtest_setup(self, item) -> None:
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            return
        for rid in marker.args:
            item.user_properties.append(("requirement", rid))
        levels = {REQUIREMENTS[r].level for r in marker.args}
        if Level.MUST not in levels and self.settings.level == "must":
            pytest.skip("SHOULD requirement: run with --level should")
        t = self.target
        have = {"witness": t.witness is not None, "slots": t.slots is not None, "restart": t.can_restart,
                "sigkill": t.can_sigkill, "delete": getattr(t.source, "can_delete", False),
                "symlink": getattr(t.source, "can_symlink", False), "limit": t.max_request_bytes is not None}
        for need in marker.kwargs.get("needs", ()):
            if not have.get(need, False):
                pytest.skip(NEEDS[need])

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            return
        rec = self.records.setdefault(item.nodeid, report.TestRecord(item.nodeid, list(marker.args)))
        env = item.stash.get(ENV_KEY, None)
        if env is not None:
            rec.timelines = {job: env.timeline(job) for job in env.timelines}
        rec.duration += rep.duration
        if rep.passed:
            if rep.when == "call":
                rec.outcome = "passed"
            return
        if rep.skipped:
            rec.outcome = "skipped"
            rec.skip_reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            rec.skip_reason = rec.skip_reason.removeprefix("Skipped: ")
            return
        if rep.when == "teardown" and rec.outcome != "passed":
            return  # the first problem is the one to report
        exc = call.excinfo.value if call.excinfo else None
        found = find_violation(exc)
        if found is None:
            rec.outcome = "error"
            rec.message = f"{type(exc).__name__}: {exc}" if exc is not None else str(rep.longrepr)
            return
        rec.outcome, rec.violated, rec.summary, rec.message = "failed", list(found.ids), found.summary, str(found)
        for rid in found.ids:  # junitxml writes the item's properties with the teardown report
            item.user_properties.append(("violated", rid))
        where = f"{item.location[0]}:{item.location[1] + 1}"
        rep.longrepr = f"{found.render()}\n(test {item.nodeid}, {where})"
        if all(expected.matches(self.expected, rid, found.summary) for rid in found.ids):
            rec.outcome = "xfailed"
            rep.outcome = "skipped"
            rep.wasxfail = f"expected failure: {', '.join(found.ids)}: {found.summary}"

    # --- the end --------------------------------------------------------------------------------------

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if self.target is None:
            return
        records = list(self.records.values())
        self.result = report.verdicts(records, self.settings.level)
        bad = report.failing(self.result, self.settings.level)
        surprise = report.unexpected_passes(self.result, self.expected)
        conformant = not bad and not surprise
        if exitstatus in (0, 1):
            session.exitstatus = 0 if conformant else 1
        if self.settings.report_json:
            report.write_json(self.settings.report_json, result=self.result, records=records, meta={
                "suite_version": SUITE_VERSION, "protocol": "v1", "target": self.target.address,
                "level": self.settings.level, "time_scale": self.settings.time_scale,
                "conformant": conformant, "exit_code": int(session.exitstatus),
                "summary": report.summary_lines(self.result, self.settings.level),
                "unexpected_passes": surprise})
        if self.settings.update_expected and self.settings.expected:
            failures = [(rid, r.summary) for r in records if r.outcome in ("failed", "xfailed") for rid in r.violated]
            Path(self.settings.expected).write_text(expected.render(failures), "utf-8")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.result:
            return
        tr = terminalreporter
        tr.write_sep("=", f"agent-conformance {SUITE_VERSION}: {self.target.address}")
        for v in self.result.values():
            note = " (expected)" if v.expected else ""
            tr.write_line(f"{v.id:<12} {v.level:<6} {v.outcome}{note}" + (f"  {v.reason}" if v.reason else ""))
        for rid in report.unexpected_passes(self.result, self.expected):
            tr.write_line(f"{rid} is listed in {self.settings.expected} but PASSED: remove it (or --update-expected)")
        for line in report.summary_lines(self.result, self.settings.level):
            tr.write_line(line, bold=True)


def registry() -> dict:
    """Import every suite module and return the test registry (test -> Coverage)."""
    import importlib
    import pkgutil

    import conformance.suite as suite

    for mod in pkgutil.iter_modules(suite.__path__):
        if mod.name.startswith("test_"):
            importlib.import_module(f"conformance.suite.{mod.name}")
    return REGISTRY
