"""The active suite: starts or reaches the agent, gives tests their fixtures, turns outcomes into verdicts."""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pytest

from conformance import SUITE_VERSION, expected, finish, fixtures, outcomes, premises, report
from conformance import verdict as run_verdict
from conformance.jobs import Witness
from conformance.launcher import REFERENCE_CMD, AgentProcess, LaunchError
from conformance.options import OPTIONS, PYTEST, OptionError, Settings, validate
from conformance.source import CommandSource, DirSource
from conformance.target import Target, Timing, read_optional
from conformance.violations import MARKER, REGISTRY, AgentUnavailable, checks_done
from protos.requirements import ALL_REQUIREMENTS, EXT_REQUIREMENTS, REQUIREMENTS, Level

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
    # the extension profile (PROTOCOL-EXT): a reason starting "not offered:" is no gap (report.NOT_OFFERED)
    "ext": "not offered: the agent has no AgentExtensions service (a v1 agent)",
    "outcome": "not offered: the agent does not list 'outcome' in GetCapabilities",
    "cancel": "not offered: the agent does not list 'cancel' in GetCapabilities",
    "watch": "not offered: the agent does not list 'watch' in GetCapabilities",
}
EXT_NEEDS = ("ext", "outcome", "cancel", "watch")


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
        self.ext_result: dict[str, report.Verdict] = {}    # the extension profile's own table
        self.run: run_verdict.RunVerdict | None = None   # the run's verdict, once decided
        self.premises: list[str] = []                      # what the premise checks confirmed
        self.notes: list[str] = []                         # e.g. the agent not serving after a restart test
        self.deselected: dict[str, tuple[str, ...]] = {}   # test name -> IDs, left out by -k or --only
        self.config = None
        self.headline_last = False   # True: the caller prints the headline as the very last line

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
            self.premises = premises.check(self.target)
        except (LaunchError, AgentUnavailable) as exc:
            self.fatal = str(exc)
        except premises.PremiseError as exc:
            self.fatal = f"premise not met: {exc}"
        if self.header and self.premises:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line("premises: " + "; ".join(self.premises))

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
        if s.ext_profile != "v1":
            self.target.extensions = self.target.capabilities()

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
        xml = getattr(config.option, "xmlpath", None)
        if xml and self.run is not None:   # after pytest's junitxml wrote its file
            from conformance import junit

            both = {**self.result, **self.ext_result}
            junit.write(xml, self.run, both, finish.messages(self.book.records()),
                        report.unexpected_passes(both, self.expected))
        if self.target is not None:
            if self.target.witness is not None:
                for gate in self.target.witness.created:   # a failed run leaves no gate files behind
                    gate.unlink(missing_ok=True)
            self.target.close()
        if self.process is not None:
            self.process.stop()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- selection -----------------------------------------------------------------------------------

    def pytest_collection_modifyitems(self, config, items) -> None:
        chosen = self.settings.selected
        if chosen != frozenset(ALL_REQUIREMENTS):
            keep, drop = [], []
            for item in items:
                marker = item.get_closest_marker(MARKER)
                (keep if marker is None or set(marker.args) & chosen else drop).append(item)
            if drop:
                config.hook.pytest_deselected(items=drop)
                items[:] = keep
        # restart and kill tests last: a restart command that fails (or leaves the agent down) must not
        # cost the other requirements their verdicts
        items[:] = [i for i in items if not _disruptive(i)] + [i for i in items if _disruptive(i)]

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
        levels = {ALL_REQUIREMENTS[r].level for r in marker.args}
        if Level.MUST not in levels and self.settings.level == "must":
            pytest.skip("SHOULD requirement: run with --level should")
        t = self.target
        have = {"witness": t.witness is not None, "slots": t.slots is not None, "restart": t.can_restart,
                "sigkill": t.can_sigkill, "delete": getattr(t.source, "can_delete", False),
                "symlink": getattr(t.source, "can_symlink", False), "limit": t.max_request_bytes is not None,
                "ext": t.extensions is not None}
        have.update({cap: cap in (t.extensions or ()) for cap in EXT_NEEDS[1:]})
        if self.settings.ext_profile == "v1" and set(marker.args) <= set(EXT_REQUIREMENTS):
            pytest.skip("not selected: --profile v1")
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
    def pytest_runtest_teardown(self, item):
        result = yield
        if _disruptive(item) and self.target is not None and self.fatal is None:
            try:   # each restart test leaves the agent serving, or the reports say it could not
                self.target.wait_reachable(self.target.timing(5.0))
            except AgentUnavailable as exc:
                self.notes.append(f"the agent is not serving after {item.name}: {exc}")
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
        records = self.book.records()
        if self.fatal is not None:
            self.run = run_verdict.error(self.fatal)
            self.result = finish.not_run(self.fatal)
        elif self.target is None:
            return
        else:
            self.result = report.verdicts(records, self.settings.level, self.settings.selected, self.deselected)
            self.ext_result = self._ext_verdicts(records)
            # --profile v1: the extension's table is NOT SELECTED and plays no part in the run's verdict
            both = {**self.result, **(self.ext_result if self.settings.ext_profile != "v1" else {})}
            surprise = report.unexpected_passes(both, self.expected)
            for rid in surprise:
                v = both[rid]
                v.reason = "; ".join(filter(None, [v.reason, f"listed in {self.settings.expected} as an expected "
                                                   f"failure but PASSED: remove the line"]))
            self.run = run_verdict.decide(both, self.settings.level, surprise, self.settings.expected)
            if exitstatus not in (0, 1) and self.run.exit_code != 2:
                self.run = run_verdict.error(f"pytest stopped with exit status {int(exitstatus)} (interrupted, "
                                             f"an internal error, or no test collected)")
        self.run.notes += self.notes
        self._update_expected(records)
        session.exitstatus = self.run.exit_code
        self._suite_properties()
        finish.write_all(self.settings, self.run, self.result, records, {
            "target": self.target.address if self.target else self.settings.target, "level": self.settings.level,
            "time_scale": self.settings.time_scale, "selected": sorted(self.settings.selected),
            "premises": self.premises, "summary": report.summary_lines(self.result, self.settings.level),
            "ext": self._ext_report(),
            "unexpected_passes": report.unexpected_passes(self.result, self.expected)},
            f"agent-conformance {SUITE_VERSION}: {self.describe()}", self.ext_result)

    def _ext_verdicts(self, records) -> dict[str, report.Verdict]:
        """The extension profile's verdicts: its own table; NOT OFFERED where the agent does not offer it
        (never a failure, unless --profile ext requires it), NOT SELECTED under --profile v1."""
        s, offered = self.settings, self.target.extensions
        out = report.verdicts(records, s.level, s.selected, self.deselected, table=EXT_REQUIREMENTS)
        for v in out.values():
            if s.ext_profile == "v1":
                v.outcome, v.reason = report.NOT_SELECTED, "not selected: --profile v1"
            elif offered is None and v.outcome in (report.SKIP, report.NOT_OFFERED):
                v.outcome, v.reason = report.NOT_OFFERED, NEEDS["ext"]
            if s.ext_profile == "ext" and v.outcome == report.NOT_OFFERED:
                v.outcome, v.reason = report.FAIL, f"required by --profile ext, but {v.reason}"
        return out

    def _ext_report(self) -> dict:
        t = self.target
        return {"profile": self.settings.ext_profile,
                "offered": None if t is None or t.extensions is None else sorted(t.extensions),
                "summary": report.summary_lines(self.ext_result, self.settings.level, "EXT "),
                "counts": {lvl: {k: len(v) for k, v in report.counts(self.ext_result, lvl).items()}
                           for lvl in ("MUST", "SHOULD")},
                "requirements": {rid: dataclasses.asdict(v) for rid, v in self.ext_result.items()}}

    def _update_expected(self, records) -> None:
        if not (self.settings.update_expected and self.settings.expected) or self.fatal is not None:
            return
        failures = [(rid, r.summary) for r in records if r.outcome in ("failed", "xfailed") for rid in r.violated]
        Path(self.settings.expected).write_text(expected.render(failures), "utf-8")
        n = len(set(failures))
        self.run.notes.append(
            f"--update-expected: wrote {n} expected failure{'s' if n != 1 else ''} to {self.settings.expected}. "
            f"The exit code ({self.run.exit_code}) is this run's own verdict, judged against the file as it was "
            f"before; a next run with --expected-failures {self.settings.expected} passes the gate while these "
            f"fail the same way")

    def _suite_properties(self) -> None:
        xml = _junit(self.config)  # junitxml writes its file in its own sessionfinish, after this one
        if xml is None:
            return
        for lvl in ("MUST", "SHOULD"):
            for outcome, ids in report.counts(self.result, lvl).items():
                xml.add_global_property(f"{lvl} {outcome}", ",".join(ids))
        xml.add_global_property("summary", " | ".join(report.summary_lines(self.result, self.settings.level)))
        xml.add_global_property("headline", self.run.headline())

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        if self.run is None:
            return
        if self.fatal is None:   # else the headline alone says it (once)
            tr.write_sep("=", f"agent-conformance {SUITE_VERSION}: {self.describe()}")
            for v in self.result.values():
                note = " (expected)" if v.expected else ""
                tr.write_line(f"{v.id:<12} {v.level:<6} {v.outcome}{note}" + (f"  {v.reason}" if v.reason else ""))
            for v in self.ext_result.values():
                note = " (expected)" if v.expected else ""
                tr.write_line(f"{v.id:<12} {v.level:<6} {v.outcome}{note}" + (f"  {v.reason}" if v.reason else ""))
            for line in report.summary_lines(self.result, self.settings.level):
                tr.write_line(line, bold=True)
            for line in report.summary_lines(self.ext_result, self.settings.level, "EXT "):
                tr.write_line(line, bold=True)
        for note in self.run.notes:
            tr.write_line(note)
        if not self.headline_last:   # the CLI prints it itself, after pytest's own last line
            tr.write_line(self.run.headline(), bold=True, red=self.run.exit_code != 0, green=self.run.exit_code == 0)


def _disruptive(item) -> bool:
    """A test that restarts or SIGKILLs the agent."""
    marker = item.get_closest_marker(MARKER)
    return marker is not None and bool({"restart", "sigkill"} & set(marker.kwargs.get("needs", ())))


def _junit(config):
    """pytest's JUnit writer when --junitxml is on (it has no public handle; record_testsuite_property,
    the public way, exists only inside a test)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a pytest without it: no suite-level properties
        return None
    return config.stash.get(xml_key, None)


def registry(package: str = "conformance.suite") -> dict:
    """Import every test module of a suite package (v1's by default, or "conformance.suite_ext") and
    return its tests' registry entries (test -> Coverage)."""
    import importlib
    import pkgutil

    suite = importlib.import_module(package)
    names = {mod.name for mod in pkgutil.iter_modules(suite.__path__) if mod.name.startswith("test_")}
    for name in sorted(names):
        importlib.import_module(f"{package}.{name}")
    return {key: cov for key, cov in REGISTRY.items() if key.split("::")[0] in names}
