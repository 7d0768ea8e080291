"""The verdict rules, each tested: PARTIAL, early return, selection, one failure block per defect, the
options table, reports, and the shape of the package (no import cycles, an inert plugin)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from _conformance_runs import ROOT, FakeSource, run_inprocess
from conformance import cli, report
from conformance.options import OPTIONS, PYTEST, OptionError, select, validate
from protos.requirements import REQUIREMENTS

PLANTED = '''
from conformance.env import OK
from conformance.violations import covers, violation


@covers("AGT-ID-1")
def test_returns_early(env):
    return


@covers("AGT-ID-2")
def test_first_defect(env):
    raise violation("AGT-ID-2", "planted defect", "details A")


@covers("AGT-ID-2")
def test_same_defect_again(env):
    raise violation("AGT-ID-2", "planted defect", "details B")


@covers("AGT-ID-3")
def test_other_requirement_stopped(env):
    raise violation("AGT-ID-2", "planted defect", "details C")


@covers("AGT-STAGE-1")
def test_partial(env):
    env.expect_code("AGT-STAGE-1", env.stage_call(env.new_id(), []), OK, "x")
    env.not_checked("AGT-STAGE-1", "a planted gap", "--witness-dir")


@covers("AGT-STAGE-2")
def test_passes(env):
    env.expect_code("AGT-STAGE-2", env.stage_call(env.new_id(), []), OK, "x")
'''


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted tests above, run in this process by pytest with the suite's flags against a FakeAgent."""
    from fakes import FakeAgent

    tmp = tmp_path_factory.mktemp("planted")
    (tmp / "test_planted.py").write_text(PLANTED)
    (tmp / "pytest.ini").write_text("[pytest]\n")
    out = tmp / "report.json"

    def run(*extra):
        fake = FakeAgent()
        with fake.serve() as address:
            code = pytest.main([str(tmp / "test_planted.py"), "-c", str(tmp / "pytest.ini"), "-p", "conformance.plugin", "-p", "no:cacheprovider",
                                "-q", f"--agent-target={address}", f"--agent-report-json={out}", *extra],
                               plugins=[FakeSource(fake)])
        return code, json.loads(out.read_text())
    return run


def _tests(data):
    return {t["nodeid"].rsplit("::", 1)[-1]: t for t in data["tests"]}


def test_early_return_is_never_pass(planted):
    code, data = planted()
    assert _tests(data)["test_returns_early"]["outcome"] == "skipped"
    assert "returned before any of its checks ran" in _tests(data)["test_returns_early"]["skip_reason"]
    assert data["requirements"]["AGT-ID-1"]["outcome"] == "SKIP"


def test_partial_verdict_is_counted_apart(planted, tmp_path):
    import xml.etree.ElementTree as ET

    junit = tmp_path / "junit.xml"
    code, data = planted(f"--junitxml={junit}")
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert props["MUST PARTIAL"] == "AGT-STAGE-1" and props["MUST PASS"] == "AGT-STAGE-2"
    assert "AGT-STAGE-1: a planted gap (needs --witness-dir)" in props["unchecked"]
    v = data["requirements"]["AGT-STAGE-1"]
    assert v["outcome"] == "PARTIAL" and "a planted gap (needs --witness-dir)" in v["reason"]
    assert data["requirements"]["AGT-STAGE-2"]["outcome"] == "PASS"
    assert data["partial"] == ["AGT-STAGE-1"] and data["counts"]["MUST"]["PARTIAL"] == 1
    assert "1 partial (AGT-STAGE-1)" in data["summary"][0]


def test_one_block_per_defect_and_skip_for_other_requirements(planted, capsys):
    code, data = planted()
    out = capsys.readouterr().out
    tests = _tests(data)
    assert code == 1 and data["requirements"]["AGT-ID-2"]["outcome"] == "FAIL"
    # one full block; pytest's short summary (not cut short when CI is set) may quote it again
    blocks = out.split("short test summary info")[0]
    assert blocks.count("violation: planted defect") == 1
    assert "the defect shown in" in out and "one failure block per defect" in out   # the repeat: one line
    assert tests["test_same_defect_again"]["outcome"] == "failed"
    # a test of AGT-ID-3 stopped by the AGT-ID-2 defect: SKIP in pytest and in the table
    assert tests["test_other_requirement_stopped"]["outcome"] == "skipped"
    assert "stopped by the AGT-ID-2 failure" in tests["test_other_requirement_stopped"]["skip_reason"]
    assert data["requirements"]["AGT-ID-3"]["outcome"] == "SKIP"
    assert "FAILED" in out and out.count("FAILED") == 2    # pytest's summary: the two AGT-ID-2 tests only


def test_selection_deselects_and_the_table_says_so(planted):
    code, data = planted("--agent-only=AGT-STAGE-*")
    assert code == 0
    assert set(_tests(data)) == {"test_partial", "test_passes"}
    assert data["requirements"]["AGT-ID-2"]["outcome"] == "NOT SELECTED"
    assert data["selected"] == sorted(r for r in REQUIREMENTS if r.startswith("AGT-STAGE-"))
    code, data = planted("--agent-skip=AGT-ID-2,AGT-ID-3")
    assert data["requirements"]["AGT-ID-2"]["outcome"] == "NOT SELECTED" and code == 0


def test_selection_errors(capsys):
    assert select("AGT-RUN-*,agt-state-2", None, "must") == {f"AGT-RUN-{i}" for i in range(1, 10)} | {"AGT-STATE-2"}
    with pytest.raises(OptionError, match=r"--only 'AGT-NOPE-\*' matches no requirement ID"):
        select("AGT-NOPE-*", None, "must")
    with pytest.raises(OptionError, match="selects no requirement"):
        select("AGT-RUN-1", "AGT-RUN-*", "must")
    with pytest.raises(OptionError, match="only SHOULD requirements.*--level should"):
        select("AGT-STAGE-5", None, "must")
    assert cli.main(["--only", "AGT-RUN-1", "--skip", "AGT-RUN-*"]) == 2
    assert "selects no requirement" in capsys.readouterr().err


def test_pytest_flags_name_themselves_in_errors():
    with pytest.raises(OptionError, match=r"^--agent-target 'x': expected HOST:PORT"):
        validate({"target": "x"}, front=PYTEST)
    with pytest.raises(OptionError, match=r"--agent-only 'AGT-X' matches no"):
        validate({"only": "AGT-X"}, front=PYTEST)
    with pytest.raises(OptionError, match=r"^--target 'x'"):
        validate({"target": "x"})
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "conformance.plugin", "-p", "no:cacheprovider", "--agent-target=x",
                           str(ROOT / "conformance" / "suite")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 4 and "--agent-target 'x'" in done.stderr


@pytest.mark.parametrize("raw, message", [
    ({"kill_cmd": "kill -9 1"}, "--kill-cmd applies to --target only"),
    ({"target": "h:1", "source_dir": ".", "kill_cmd": "kill -9 1"}, "--kill-cmd needs --restart-cmd"),
    ({"target": "h:1", "source_dir": ".", "kill_cmd": "'", "restart_cmd": "x"}, "--kill-cmd \"'\""),
    ({"report_md": "/nonexistent/x.md"}, "--report-md '/nonexistent/x.md'"),
    ({"skip": ","}, "--skip ','"),
])
def test_new_options_are_checked(raw, message):
    with pytest.raises(OptionError, match=__import__("re").escape(message)):
        validate(raw)


def test_one_table_drives_cli_and_pytest():
    parser = cli.build_parser()
    cli_flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    for opt in OPTIONS:
        assert opt.cli in cli_flags and opt.pytest.startswith("--agent-")
    # the CLI hands its settings to pytest as a plugin object: no suite flag is re-serialised
    from types import SimpleNamespace
    args = cli._pytest_args(SimpleNamespace(quiet=False, junitxml=None, keyword=None, exitfirst=False), "ini")
    assert not [a for a in args if a.startswith("--agent-")]


def test_verdict_rules_in_the_report_module():
    recs = [report.TestRecord("s::test_restart_clean", ["AGT-DUR-1"], "passed"),
            report.TestRecord("s::test_restart_after_sigkill", ["AGT-DUR-1"], "skipped",
                              skip_reason="needs --kill-cmd with --restart-cmd"),
            report.TestRecord("s::test_a", ["AGT-ID-1"], "passed")]
    v = report.verdicts(recs, "must", deselected={"test_b": ("AGT-ID-1",)})
    assert v["AGT-DUR-1"].outcome == "PARTIAL" and "needs --kill-cmd" in v["AGT-DUR-1"].reason
    assert v["AGT-ID-1"].outcome == "PARTIAL" and "deselected (-k): test_b" in v["AGT-ID-1"].reason
    line = report.summary_lines(v, "must")[0]
    assert "2 partial (AGT-ID-1, AGT-DUR-1)" in line and line.endswith("(not every check of every requirement ran)")
    assert not report.failing(v, "must")
    md = report.markdown(v, "must", "title")
    assert "| AGT-DUR-1 | MUST | 🟡 PARTIAL |" in md and md.startswith("### title")


def test_cli_output_speaks_of_the_agent(tmp_path):
    """No pytest header paths, a report in Markdown, and the run's own header line."""
    md = tmp_path / "summary.md"
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "-k", "test_stage_is_idempotent",
                           "--report-md", str(md)], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stdout[-2000:]
    out = done.stdout
    assert "rootdir" not in out and "configfile" not in out and "site-packages" not in out and "ini-" not in out
    assert "conformance/suite" not in out
    assert out.startswith("agent-conformance 1.0.0 (protocol v1): the embedded reference agent")
    text = md.read_text()
    assert "| AGT-STAGE-2 | MUST | 🟡 PARTIAL | deselected (-k)" in text


def test_no_import_cycles_among_conformance_modules():
    pkg = ROOT / "conformance"
    graph = {}
    for path in pkg.glob("*.py"):
        mod = f"conformance.{path.stem}"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("conformance"):
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("conformance")}
        graph[mod] = {d for d in deps if (pkg / f"{d.split('.')[-1]}.py").exists() and d.count(".") == 1}

    def visit(node, stack):
        assert node not in stack, f"import cycle: {' -> '.join(stack + [node])}"
        for dep in graph.get(node, ()):
            visit(dep, stack + [node])
    for mod in graph:
        visit(mod, [])
    assert "conformance.plugin" not in graph["conformance.violations"]


def test_plugin_import_needs_only_core_deps():
    code = ("import sys, conformance.plugin\n"
            "bad = [m for m in ('reference_agent', 'fakes', 'simulator', 'fsspec', 'prometheus_client', 'simpy', "
            "'numpy', 'conformance.session', 'conformance.env') if m in sys.modules]\n"
            "print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.slow
def test_kill_cmd_gives_the_sigkill_half_to_a_target(tmp_path):
    """--target with --restart-cmd only: AGT-DUR-1 is PARTIAL naming --kill-cmd; with --kill-cmd: PASS."""
    import socket

    from conformance.target import Target

    source, witness, state = tmp_path / "source", tmp_path / "witness", tmp_path / "state"
    source.mkdir()
    witness.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    pidfile = tmp_path / "pid"
    # started by a shell in the background, as a service manager would (no child of this process: no zombie
    # for `kill -0` to see), on the same address every time
    restart = (f"{sys.executable} -m reference_agent serve --listen {address} --source {source} "
               f"--state-dir {state} --slots 2 --no-path-pythons > {tmp_path}/out.log 2>&1 & echo $! > {pidfile}")
    subprocess.run(restart, shell=True, check=True, timeout=30)
    Target(address, None).wait_reachable(60)
    try:
        kill = f"kill -KILL $(cat {pidfile}); while kill -0 $(cat {pidfile}) 2>/dev/null; do sleep 0.05; done"
        stop = f"kill -TERM $(cat {pidfile}) 2>/dev/null; while kill -0 $(cat {pidfile}) 2>/dev/null; do sleep 0.05; done; "
        base = ["--target", address, "--source-dir", str(source), "--witness-dir", str(witness), "--slots", "2",
                "--only", "AGT-DUR-1"]
        run = run_inprocess(base + ["--restart-cmd", stop + restart], tmp_path)
        v = run.report["requirements"]["AGT-DUR-1"]
        assert run.code == 0 and v["outcome"] == "PARTIAL" and "--kill-cmd" in v["reason"], v
        run = run_inprocess(base + ["--restart-cmd", stop + restart, "--kill-cmd", kill], tmp_path)
        assert run.code == 0 and run.report["requirements"]["AGT-DUR-1"]["outcome"] == "PASS", run.report["summary"]
    finally:
        subprocess.run(f"kill -KILL $(cat {pidfile}) 2>/dev/null", shell=True)
