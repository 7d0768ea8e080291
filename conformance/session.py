"""The active suite: starts or reaches the agent, gives tests their fixtures, turns outcomes into verdicts."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from conformance import SUITE_VERSION, expected, fixtures, outcomes, report
from conformance.jobs import Witness
from conformance.launcher import REFERENCE_CMD, AgentProcess, LaunchError
from conformance.options import OPTIONS, PYTEST, OptionError, Settings, validate
from conformance.source import CommandSource, DirSource
from conformance.target import Target, Timing, read_optional
from conformance.violations import MARKER, REGISTRY, AgentUnavailable, checks_done
from protos.requirements import REQUIREMENTS, Level

DEFAULT_SLOTS = 2
REFERENCE_MAX_REQUEST = 4 * 1024 * 1024  # the reference agent's default --max-request-bytes

NEEDS = {
    "witness": "needs --witness-dir (a folder that the agent's jobs can write and the suite can read)",
    "slots": "needs --slots N (the agent's slot count)",
    "restart": "needs --restart-cmd, or an agent that the suite starts itself (--agent-cmd or embedded)",
    "sigkill": "needs --kill-cmd with --restart-cmd, or an agent that the suite starts itself (--agent-cmd "
               "or embedded), to SIGKILL it",
    "delete": "needs --source-dir (to remove or replace a file in the agent's source)",
    "symlink": "needs --source-dir (to place a symlink in the agent's source)",
    "limit": "needs --max-request-bytes N (the agent's request size limit)",
}


def settings_from(config) -> Settings:
    """Settings from pytest's own flags (errors name those flags: --agent-target, not --target)."""
    raw = {o.field: config.getoption(o.dest) for o in OPTIONS}
    hooked = bool(config.pluginmanager.hook.pytest_agent_conformance_source.get_hookimpls())
    try:
        return validate(raw, source_from_hook=hooked, front=PYTEST)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None


class ConformancePlugin:
    """The suite for one session: registered by conformance.plugin from pytest's flags, or handed to
    pytest.main(plugins=[...]) by the CLI with settings it built once. Owns the target."""

    is_agent_conformance_session = True

    def __init__(self, settings: Settings, *, header: bool = False):
        self.settings = settings
        self.header = header   # the CLI prints its own header instead of pytest's (no paths of pytest's)
        self.expected: dict[str, list[str]] = {}
        if settings.expected and Path(settings.expected).is_file():
            try:
                self.expected = expected.load(settings.expected)
            except expected.ExpectedError as exc:
                raise pytest.UsageError(str(exc)) from None
        self.book = outcomes.Book(self.expected, settings.selected)
        self.target: Target | None = None
        self.process: AgentProcess | None = None
        self.tmp: str | None = None
        self.fatal: str | None = None
        self.result: dict[str, report.Verdict] = {}
        self.deselected: dict[str, tuple[str, ...]] = {}   # test name -> IDs, left out by -k or --only
        self.config = None

    def pytest_configure(self, config) -> None:
        self.config = config
        config.stash[fixtures.SESSION] = self
        config.pluginmanager.register(fixtures, "agent-conformance-fixtures")

    def describe(self) -> str:
        s = self.settings
        if s.target:
            return f"the agent at {s.target}"
        return f"the agent started by --agent-cmd {s.agent_cmd!r}" if s.agent_cmd else "the embedded reference agent"

    def pytest_report_header(self, config) -> list[str]:
        return [f"agent-conformance {SUITE_VERSION} (protocol v1): {self.describe()}, level {self.settings.level}"]

    # --- the agent -----------------------------------------------------------------------------------

    def pytest_sessionstart(self, session) -> None:
        if self.header:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(self.pytest_report_header(self.config)[0])
                reporter.showfspath = False  # the suite's files are no concern of the user's (site-packages paths)
        try:
            self._start()
        except (LaunchError, AgentUnavailable) as exc:
            self.fatal = str(exc)

    def _start(self) -> None:
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
            address = self.process.start()
            source = s.put_cmd and CommandSource(s.put_cmd) or DirSource(source_dir)
        else:
            address = s.target
            source = DirSource(s.source_dir) if s.source_dir else CommandSource(s.put_cmd) if s.put_cmd else None
        source = self.config.hook.pytest_agent_conformance_source(config=self.config) or source
        tls = None
        if s.tls_ca:
            tls = (read_optional(s.tls_ca), read_optional(s.tls_cert), read_optional(s.tls_key))
        self.target = Target(address, source, timing, Witness(witness_dir) if witness_dir else None, slots,
                             s.python_version, self.process, s.restart_cmd, s.kill_cmd, tls)
        self.target.max_request_bytes = s.max_request_bytes or (
            REFERENCE_MAX_REQUEST if s.owned and not s.agent_cmd else None)
        self.target.wait_reachable(timing.restart)

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

    # --- selection -----------------------------------------------------------------------------------

    def pytest_collection_modifyitems(self, config, items) -> None:
        chosen = self.settings.selected
        if chosen == frozenset(REQUIREMENTS):
            return
        keep, drop = [], []
        for item in items:
            marker = item.get_closest_marker(MARKER)
            (keep if marker is None or set(marker.args) & chosen else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def pytest_deselected(self, items) -> None:
        for item in items:
            marker = item.get_closest_marker(MARKER)
            if marker is not None:
                self.deselected[item.name] = tuple(marker.args)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        if self.fatal is not None:
            return True  # the agent cannot be tested: no test runs, the error is reported once
        return None

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
        blocked = self.book.blocked_by_unavailable()
        if blocked:
            try:  # back again (a restart took long)? then test on
                t.wait_reachable(t.timing(2.0))
                self.book.unavailable = None
            except AgentUnavailable:
                pytest.skip(blocked)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        before = checks_done()
        result = yield
        env = item.stash.get(fixtures.ENV_KEY, None)
        if env is not None and item.get_closest_marker(MARKER) is not None:
            env.settle()  # the checks that apply wherever the suite looks, inside the test's own verdict
            if checks_done() == before:
                pytest.skip("the test returned before any of its checks ran: not a PASS")
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        rep = yield
        marker = item.get_closest_marker(MARKER)
        if marker is not None:
            self.book.record(item, call, rep, list(marker.args), item.stash.get(fixtures.ENV_KEY, None))
        return rep

    # --- the end --------------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if self.fatal is not None:
            session.exitstatus = 2
            return
        if self.target is None:
            return
        records = self.book.records()
        self.result = report.verdicts(records, self.settings.level, self.settings.selected, self.deselected)
        bad = report.failing(self.result, self.settings.level)
        surprise = report.unexpected_passes(self.result, self.expected)
        conformant = not bad and not surprise
        if exitstatus in (0, 1):
            session.exitstatus = 0 if conformant else 1
        summary = report.summary_lines(self.result, self.settings.level)
        xml = _junit(self.config)  # junitxml writes its file in its own sessionfinish, after this one
        if xml is not None:
            for lvl in ("MUST", "SHOULD"):
                for outcome, ids in report.counts(self.result, lvl).items():
                    xml.add_global_property(f"{lvl} {outcome}", ",".join(ids))
            xml.add_global_property("summary", " | ".join(summary))
        if self.settings.report_json:
            report.write_json(self.settings.report_json, result=self.result, records=records, meta={
                "suite_version": SUITE_VERSION, "protocol": "v1", "target": self.target.address,
                "level": self.settings.level, "time_scale": self.settings.time_scale,
                "selected": sorted(self.settings.selected),
                "conformant": conformant, "exit_code": int(session.exitstatus),
                "summary": summary, "unexpected_passes": surprise})
        if self.settings.report_md:
            Path(self.settings.report_md).write_text(report.markdown(
                self.result, self.settings.level, f"agent-conformance {SUITE_VERSION}: {self.describe()}"), "utf-8")
        if self.settings.update_expected and self.settings.expected:
            failures = [(rid, r.summary) for r in records if r.outcome in ("failed", "xfailed") for rid in r.violated]
            Path(self.settings.expected).write_text(expected.render(failures), "utf-8")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        if self.fatal is not None:
            tr.write_line(f"agent-conformance: error: {self.fatal}", red=True, bold=True)
            return
        if not self.result:
            return
        tr.write_sep("=", f"agent-conformance {SUITE_VERSION}: {self.describe()}")
        for v in self.result.values():
            note = " (expected)" if v.expected else ""
            tr.write_line(f"{v.id:<12} {v.level:<6} {v.outcome}{note}" + (f"  {v.reason}" if v.reason else ""))
        for rid in report.unexpected_passes(self.result, self.expected):
            tr.write_line(f"{rid} is listed in {self.settings.expected} but PASSED: remove it (or --update-expected)")
        for line in report.summary_lines(self.result, self.settings.level):
            tr.write_line(line, bold=True)


def _junit(config):
    """pytest's JUnit writer when --junitxml is on (it has no public handle; record_testsuite_property,
    the public way, exists only inside a test)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a pytest without it: no suite-level properties
        return None
    return config.stash.get(xml_key, None)


def registry() -> dict:
    """Import every suite module and return the test registry (test -> Coverage)."""
    import importlib
    import pkgutil

    import conformance.suite as suite

    for mod in pkgutil.iter_modules(suite.__path__):
        if mod.name.startswith("test_"):
            importlib.import_module(f"conformance.suite.{mod.name}")
    return REGISTRY

