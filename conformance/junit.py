"""JUnit XML for CI dashboards: besides pytest's one testcase per suite test, one testcase per requirement
ID (its verdict, reason and violation) and one for the run's verdict, so that the file is red exactly when
the exit code is not 0 and a failure is filed under the requirement it breaks, not under the test that
happened to see it. Written also when pytest never ran (a usage error)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from conformance import report
from conformance.verdict import RunVerdict

SUITE = "agent-conformance requirements"
CLASS = "agent-conformance.requirements"


def _case(parent, name: str, kind: str | None, message: str = "", text: str = "", props=()) -> None:
    case = ET.SubElement(parent, "testcase", classname=CLASS, name=name, time="0")
    if props:
        holder = ET.SubElement(case, "properties")
        for key, value in props:
            ET.SubElement(holder, "property", name=key, value=value)
    if kind is not None:
        node = ET.SubElement(case, kind, message=message[:1000])
        if text:
            node.text = text


def _requirement(parent, v: report.Verdict, message: str, listed_but_passed: bool) -> str | None:
    props = [("requirement", v.id), ("level", v.level), ("verdict", v.outcome + (" (expected)" if v.expected else "")),
             ("reason", v.reason)]
    name = f"{v.id} {v.level}: {v.text}"
    if v.outcome == report.FAIL and not v.expected:
        _case(parent, name, "failure", f"{v.id} FAIL: {v.reason}", message, props)
        return "failure"
    if v.outcome == report.ERROR:
        _case(parent, name, "error", f"{v.id} ERROR: {v.reason}", message, props)
        return "error"
    if listed_but_passed:
        _case(parent, name, "failure", f"{v.id} PASSED but is listed as an expected failure: {v.reason}", "", props)
        return "failure"
    if v.outcome == report.FAIL:   # an expected failure: skipped, as pytest files an xfail
        _case(parent, name, "skipped", f"expected failure: {v.reason}", message, props)
        return "skipped"
    if v.outcome in (report.SKIP, report.NOT_SELECTED):
        _case(parent, name, "skipped", f"{v.outcome}: {v.reason}", "", props)
        return "skipped"
    _case(parent, name, None, props=props)   # PASS, PARTIAL (the reason says what was not checked)
    return None


def write(path: str | Path, run: RunVerdict, result: dict[str, report.Verdict] | None = None,
          messages: dict[str, str] | None = None, surprise=()) -> None:
    """Add the requirements suite and the verdict case to the JUnit file at `path` (pytest's, or a new one)."""
    path = Path(path)
    try:
        tree = ET.parse(path)
        root = tree.getroot()
    except (OSError, ET.ParseError):
        root = ET.Element("testsuites")
        tree = ET.ElementTree(root)
    if root.tag == "testsuite":   # xunit1 with one suite: wrap it
        wrapper = ET.Element("testsuites")
        wrapper.append(root)
        root, tree = wrapper, ET.ElementTree(wrapper)
    for old in [s for s in root.findall("testsuite") if s.get("name") == SUITE]:
        root.remove(old)
    suite = ET.SubElement(root, "testsuite", name=SUITE)
    holder = ET.SubElement(suite, "properties")
    for key, value in (("exit_code", str(run.exit_code)), ("gate", run.gate), ("verdict", run.verdict),
                       ("reason", run.reason), ("headline", run.headline())):
        ET.SubElement(holder, "property", name=key, value=value)
    tally = {"failure": 0, "error": 0, "skipped": 0}
    for v in (result or {}).values():
        kind = _requirement(suite, v, (messages or {}).get(v.id, ""), v.id in surprise)
        if kind:
            tally[kind] += 1
    kind = {0: None, 1: "failure", 2: "error"}[run.exit_code]
    _case(suite, "agent-conformance verdict", kind, run.headline(), "\n".join(run.notes),
          [("exit_code", str(run.exit_code)), ("gate", run.gate)])
    if kind:
        tally[kind] += 1
    suite.set("tests", str(len(result or {}) + 1))
    suite.set("failures", str(tally["failure"]))
    suite.set("errors", str(tally["error"]))
    suite.set("skipped", str(tally["skipped"]))
    suite.set("time", "0")
    _totals(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _totals(root) -> None:
    """The <testsuites> totals, when the file carries them, over every suite."""
    for key in ("tests", "failures", "errors", "skipped"):
        if key in root.attrib or key != "skipped":
            root.set(key, str(sum(int(s.get(key, "0") or 0) for s in root.findall("testsuite"))))
