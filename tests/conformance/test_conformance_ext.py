"""The extension profile `ext` (issue 21): checked when the agent lists it, with its own verdict table in
every report; NOT OFFERED (never a failure of v1) for a v1-only agent unless --profile ext requires it;
every extension defect of fakes.broken caught on exactly its AGT-EXT IDs."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from _conformance_runs import ROOT, FakeSource, broken_args, run_inprocess
from conformance import plugin
from conformance.launcher import REFERENCE_CMD
from fakes.broken import CATALOGUE
from protos.requirements import EXT_REQUIREMENTS, REQUIREMENTS

EXT_AGENTS = sorted(n for n, c in CATALOGUE.items() if set(c.violates) & set(EXT_REQUIREMENTS))


def _ext_tests(ids) -> list[str]:
    """The ext suite's tests that check any of `ids` (from their markers)."""
    from conformance.session import registry

    return sorted({k.split("::")[1] for k, cov in registry("conformance.suite_ext").items() if set(cov.ids) & set(ids)})


def _ext(run) -> dict[str, str]:
    return {rid: v["outcome"] for rid, v in run.report["ext"]["requirements"].items()}


@pytest.mark.parametrize("name", EXT_AGENTS)
def test_every_extension_defect_is_caught_on_exactly_its_ids(name, tmp_path):
    declared = set(CATALOGUE[name].violates)
    tests = _ext_tests(declared)
    run = run_inprocess(broken_args(name) + ["-k", " or ".join(tests)], tmp_path)
    ext = _ext(run)
    failed = {rid for rid, o in ext.items() if o in ("FAIL", "ERROR")}
    assert run.code == 1 and declared <= failed, (name, tests, {k: v for k, v in run.report["ext"]["requirements"]
                                                                 .items() if k in declared or k in failed})
    assert failed == declared, f"{name}: extension failures it does not declare: {sorted(failed - declared)}"
    assert not run.failed(), f"{name}: v1 failures: {sorted(run.failed())}"


@pytest.fixture(scope="module")
def reference_ext_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ext")
    md, junit = tmp / "summary.md", tmp / "junit.xml"
    run = run_inprocess(["--agent-cmd", REFERENCE_CMD + " --no-path-pythons", "--level", "should", "-k", "ext",
                         "--report-md", str(md), "--junitxml", str(junit)], tmp)
    return run, md, junit


def test_the_reference_agent_passes_every_ext_id_in_every_format(reference_ext_run):
    run, md, junit = reference_ext_run
    assert run.report["ext"]["offered"] == ["cancel", "outcome", "watch"]
    assert _ext(run) == {rid: "PASS" for rid in EXT_REQUIREMENTS}, run.report["ext"]["requirements"]
    assert run.report["ext"]["summary"] == ["EXT MUST: 8/8 pass, conformant", "EXT SHOULD: 1/1 pass, conformant"]
    text = md.read_text()
    assert "Extension profile `ext`" in text and "| AGT-EXT-9 | SHOULD | ✅ PASS |" in text
    names = {c.get("name").split(" ", 1)[0] for c in ET.parse(junit).iter("testcase")}
    assert set(EXT_REQUIREMENTS) <= names
    assert run.code == 0   # -k: v1 is deselected, so the verdict is "in what was checked only"


def _fake_run(tmp_path, *extra, extensions=None):
    from fakes import AfterPolls, FakeAgent

    fake = FakeAgent(progression=AfterPolls(wait=1, run=2), extensions=extensions)
    report, ini = tmp_path / "fake.json", tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    with fake.serve() as address:
        code = pytest.main([str(ROOT / "conformance" / "suite"), str(ROOT / "conformance" / "suite_ext"), "-c", str(ini),
                            "--rootdir", str(ROOT / "conformance"), "-p", "conformance.plugin", "-p", "no:cacheprovider",
                            "-q", f"{plugin.TARGET}={address}", f"{plugin.REPORT_JSON}={report}",
                            "-k", "stage_is_idempotent or ext", *extra], plugins=[FakeSource(fake)])
    return code, json.loads(report.read_text())


def test_a_v1_only_agent_is_not_offered_never_a_failure(tmp_path):
    code, data = _fake_run(tmp_path)
    assert code == 0 and data["ext"]["offered"] is None, data["reason"]
    assert {v["outcome"] for v in data["ext"]["requirements"].values()} == {"NOT OFFERED"}
    assert data["ext"]["summary"][0].startswith("EXT MUST: not offered")
    assert set(data["requirements"]) == set(REQUIREMENTS)   # the v1 table is v1's alone


def test_profile_ext_requires_the_extension(tmp_path):
    code, data = _fake_run(tmp_path, "--agent-profile=ext")
    assert code == 1 and data["exit_code"] == 1, data["reason"]
    assert all(v["outcome"] == "FAIL" and "required by --profile ext" in v["reason"]
               for v in data["ext"]["requirements"].values())


def test_profile_v1_leaves_the_extension_out(tmp_path):
    code, data = _fake_run(tmp_path, "--agent-profile=v1", extensions=("outcome", "cancel", "watch"))
    assert code == 0 and {v["outcome"] for v in data["ext"]["requirements"].values()} == {"NOT SELECTED"}
    assert "not selected" not in data["reason"], data["reason"]   # no gap of the v1 verdict
