"""Every report carries the run's one verdict (issue 19.2, 19.5): for each exit path, the last stdout line,
the JUnit file, the JSON report and the Markdown summary say the same exit code, gate, verdict and reason;
JUnit has one testcase per requirement ID. Each path is a real agent-conformance process."""
from __future__ import annotations

import http.server
import socket
import threading
import xml.etree.ElementTree as ET

import pytest

from _conformance_runs import broken_args, run_cli
from conformance.junit import SUITE
from conformance.report import _cell
from conformance.launcher import REFERENCE_CMD
from protos.requirements import REQUIREMENTS

FAST = REFERENCE_CMD + " --no-path-pythons"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _formats(tmp_path, args):
    junit, md = tmp_path / "junit.xml", tmp_path / "summary.md"
    run = run_cli([*args, "--junitxml", str(junit), "--report-md", str(md)], tmp_path)
    return run, junit, md


def _check_agree(run, junit, md, code: int, reason_has: str):
    """The four formats say what the exit code says, word for word."""
    assert run.code == code, (run.stdout[-3000:], run.stderr[-2000:])
    data = run.report
    assert data is not None, f"no JSON report for exit {code}"
    headline = data["headline"]
    assert data["exit_code"] == code and data["gate"] == {0: "PASS", 1: "FAIL", 2: "ERROR"}[code]
    assert headline.startswith(f"agent-conformance: exit {code} (gate {data['gate']}): {data['verdict']}: ")
    assert reason_has in data["reason"], data["reason"]
    assert data["conformant"] is (code == 0 and data["verdict"] == "conformant")
    assert run.stdout.strip().splitlines()[-1] == headline, run.stdout[-2000:]
    assert f"**{_cell(headline)}**" in md.read_text("utf-8")
    root = ET.parse(junit).getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    ours = suites[SUITE]
    props = {p.get("name"): p.get("value") for p in ours.find("properties")}
    assert props["headline"] == headline and props["exit_code"] == str(code)
    verdict_case = next(c for c in ours.iter("testcase") if c.get("name") == "agent-conformance verdict")
    kinds = {child.tag for child in verdict_case} - {"properties"}
    assert kinds == ({"failure"} if code == 1 else {"error"} if code == 2 else set())
    if kinds:
        assert next(child for child in verdict_case if child.tag in kinds).get("message") == headline
    red = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites.values())
    assert (red > 0) is (code != 0), "the JUnit file is green exactly when the exit code is 0"
    cases = {c.get("name").split(" ", 1)[0]: c for c in ours.iter("testcase")}
    assert set(REQUIREMENTS) <= set(cases), "one testcase per requirement ID"
    return data, cases


def _tags(case) -> set[str]:
    return {child.tag for child in case} - {"properties"}


def test_exit_0_conformant_in_what_was_checked(tmp_path):
    run, junit, md = _formats(tmp_path, ["--agent-cmd", FAST, "-k", "test_stage_is_idempotent"])
    data, cases = _check_agree(run, junit, md, 0, "not fully checked")
    assert data["verdict"] == "conformant in what was checked only"
    assert _tags(cases["AGT-STAGE-2"]) == set() and _tags(cases["AGT-RUN-1"]) == {"skipped"}


def test_exit_1_a_failure_is_filed_under_its_requirement(tmp_path):
    run, junit, md = _formats(tmp_path, broken_args("OkWithoutCode") + ["-k", "test_ok_answers_carry_required_fields"])
    data, cases = _check_agree(run, junit, md, 1, "AGT-WIRE-2 FAIL")
    assert data["verdict"] == "NOT conformant"
    failure = cases["AGT-WIRE-2"].find("failure")
    assert failure is not None and "violation: OK RunJobResponse without a valid code" in failure.text


def test_exit_0_expected_failures_are_no_conformance(tmp_path):
    expected = tmp_path / "expected.txt"
    expected.write_text("AGT-WIRE-2  # OK RunJobResponse\n")
    run, junit, md = _formats(tmp_path, broken_args("OkWithoutCode") + [
        "-k", "test_ok_answers_carry_required_fields", "--expected-failures", str(expected)])
    data, cases = _check_agree(run, junit, md, 0, "AGT-WIRE-2 failed as listed")
    assert data["conformant"] is False and data["expected_failures"] == ["AGT-WIRE-2"]
    assert "expected failure (AGT-WIRE-2), NOT conformant" in data["summary"][0]
    assert _tags(cases["AGT-WIRE-2"]) == {"skipped"}


def test_exit_1_an_expected_failure_that_passes(tmp_path):
    expected = tmp_path / "expected.txt"
    expected.write_text("AGT-ID-1  # listed but passing\n")
    run, junit, md = _formats(tmp_path, ["--agent-cmd", FAST, "-k", "test_malformed_uuids_are_invalid_argument",
                                         "--expected-failures", str(expected)])
    data, cases = _check_agree(run, junit, md, 1, "AGT-ID-1 listed in")
    assert "PASSED: remove the line" in data["requirements"]["AGT-ID-1"]["reason"]
    assert "as an expected failure but PASSED" in md.read_text()
    assert _tags(cases["AGT-ID-1"]) == {"failure"}


def test_exit_1_update_expected_says_what_it_wrote(tmp_path):
    expected = tmp_path / "expected.txt"
    run, junit, md = _formats(tmp_path, broken_args("OkWithoutCode") + [
        "-k", "test_ok_answers_carry_required_fields", "--expected-failures", str(expected), "--update-expected"])
    data, _ = _check_agree(run, junit, md, 1, "AGT-WIRE-2 FAIL")
    note = next(n for n in data["notes"] if n.startswith("--update-expected"))
    assert f"wrote 1 expected failure to {expected}" in note and "exit code (1) is this run's own" in note
    assert note in run.stdout and expected.read_text().count("AGT-WIRE-2") == 1


def test_exit_2_usage_error(tmp_path):
    run, junit, md = _formats(tmp_path, ["--slots", "many"])
    data, cases = _check_agree(run, junit, md, 2, "usage error: --slots 'many'")
    assert "--slots 'many'" in run.stderr and all(_tags(cases[rid]) == {"skipped"} for rid in REQUIREMENTS)


def test_exit_2_unknown_flag_still_writes_the_reports(tmp_path):
    run, junit, md = _formats(tmp_path, ["--no-such-flag"])
    _check_agree(run, junit, md, 2, "unrecognized arguments: --no-such-flag")


def test_exit_2_unreachable_agent(tmp_path):
    run, junit, md = _formats(tmp_path, ["--target", f"127.0.0.1:{_free_port()}", "--source-dir", str(tmp_path),
                                         "--time-scale", "0.1"])
    data, _ = _check_agree(run, junit, md, 2, "connection refused")
    assert data["tests"] == []


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_exit_2_an_http_server_on_the_port_is_named_as_such(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run, junit, md = _formats(tmp_path, ["--target", f"127.0.0.1:{server.server_address[1]}", "--source-dir",
                                             str(tmp_path), "--time-scale", "0.1"])
    finally:
        server.shutdown()
        server.server_close()
    data, _ = _check_agree(run, junit, md, 2, "an HTTP/1 server answers on the port")
    assert "no connection" not in data["reason"]


@pytest.mark.parametrize("code", [0, 1, 2])
def test_cli_help_explains_each_exit_code(code):
    from conformance import cli

    assert f"  {code}  " in cli.EPILOG


def test_the_run_verdict_rules():
    """conformance.verdict.decide on made-up tables: one verdict per situation, exit code and gate in step."""
    from conformance import report, verdict

    def table(**outcomes):
        out = {}
        for rid, req in REQUIREMENTS.items():
            o = outcomes.get(rid.replace("-", "_"), report.PASS)
            out[rid] = report.Verdict(rid, req.level.value, req.text, o, "why" if o != report.PASS else "",
                                      expected=(o == "XFAIL"))
            if o == "XFAIL":
                out[rid].outcome = report.FAIL
        return out

    ok = verdict.decide(table(), "must", [], None)
    assert (ok.exit_code, ok.gate, ok.verdict, ok.conformant) == (0, "PASS", "conformant", True)
    assert ok.reason == "27 v1 requirements of 27 PASS (MUST)"
    bad = verdict.decide(table(AGT_RUN_3=report.FAIL, AGT_DUR_1=report.ERROR), "must", [], None)
    assert (bad.exit_code, bad.gate, bad.verdict) == (1, "FAIL", "NOT conformant") and "and 1 more" in bad.reason
    xf = verdict.decide(table(AGT_DUR_1="XFAIL"), "must", [], "x.txt")
    assert xf.exit_code == 0 and not xf.conformant and "AGT-DUR-1 failed as listed in x.txt" in xf.reason
    stale = verdict.decide(table(), "must", ["AGT-ID-1"], "x.txt")
    assert stale.exit_code == 1 and "AGT-ID-1 listed in x.txt" in stale.reason
    partial = verdict.decide(table(AGT_ERR_2=report.PARTIAL), "must", [], None)
    assert partial.exit_code == 0 and partial.verdict == "conformant in what was checked only"
    nothing = verdict.decide(table(**{rid.replace("-", "_"): report.SKIP for rid in REQUIREMENTS}), "must", [], None)
    assert nothing.exit_code == 2 and nothing.gate == "ERROR"
    assert verdict.error("usage error: x").headline() == "agent-conformance: exit 2 (gate ERROR): no verdict: usage error: x"
