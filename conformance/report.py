"""Per-requirement verdicts (PASS, PARTIAL, FAIL, ERROR, SKIP, NOT SELECTED) from test records; summary lines,
JSON and Markdown reports."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protos.requirements import REQUIREMENTS, Level

PASS, PARTIAL, FAIL, ERROR, SKIP, NOT_SELECTED = "PASS", "PARTIAL", "FAIL", "ERROR", "SKIP", "NOT SELECTED"
NOT_OFFERED = "NOT OFFERED"   # an optional extension the agent does not offer: no gap, no failure
OUTCOMES = (PASS, PARTIAL, FAIL, ERROR, SKIP, NOT_SELECTED, NOT_OFFERED)
NOT_OFFERED_PREFIX = "not offered:"   # the skip reason of a test of an extension the agent does not offer
NOT_APPLICABLE = "not applicable:"   # a skip reason that is no gap (e.g. no optional server reflection)


@dataclass
class TestRecord:
    """One suite test's outcome. `violated` are the IDs its failure names (may lie outside `ids`);
    `unchecked` are (ID, what was not checked, the option that would check it)."""

    nodeid: str
    ids: list[str]
    outcome: str = "passed"          # passed, failed, error, skipped, xfailed
    violated: list[str] = field(default_factory=list)
    summary: str = ""
    message: str = ""
    skip_reason: str = ""
    timelines: dict = field(default_factory=dict)
    duration: float = 0.0
    unchecked: list = field(default_factory=list)


@dataclass
class Verdict:
    id: str
    level: str
    text: str
    outcome: str
    reason: str = ""
    expected: bool = False
    tests: list[str] = field(default_factory=list)


def _name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def verdicts(records: list[TestRecord], level: str, selected=None, deselected: dict | None = None,
             table: dict | None = None) -> dict[str, Verdict]:
    """One verdict per requirement of `table` (default: v1's). `deselected` (test name -> IDs, the tests
    that -k left out) makes a requirement whose tests did not all run PARTIAL rather than PASS."""
    table = REQUIREMENTS if table is None else table
    selected = set(table) if selected is None else set(selected)
    out = {}
    for rid, req in table.items():
        v = Verdict(rid, req.level.value, req.text, SKIP)
        covering = [r for r in records if rid in r.ids]
        v.tests = [r.nodeid for r in covering]
        failing = [r for r in records if rid in r.violated and r.outcome in ("failed", "xfailed")]
        if rid not in selected:
            v.outcome, v.reason = NOT_SELECTED, "not selected (--only / --skip)"
        elif req.level is Level.SHOULD and level == "must":
            v.reason = "SHOULD requirement: run with --level should"
        elif [r for r in failing if r.outcome == "failed"]:
            first = next(r for r in failing if r.outcome == "failed")
            v.outcome, v.reason = FAIL, f"{first.summary} ({first.nodeid})"
        elif failing:
            v.outcome, v.reason, v.expected = FAIL, f"expected failure: {failing[0].summary}", True
        elif [r for r in covering if r.outcome == "error"]:
            first = next(r for r in covering if r.outcome == "error")
            v.outcome, v.reason = ERROR, f"{first.message.splitlines()[0] if first.message else 'error'} ({first.nodeid})"
        else:
            gaps = _gaps(rid, records, covering, deselected)
            not_offered = [r for r in covering if r.outcome == "skipped" and r.skip_reason.startswith(NOT_OFFERED_PREFIX)]
            if [r for r in covering if r.outcome == "passed"]:
                v.outcome, v.reason = (PARTIAL, "; ".join(gaps)) if gaps else (PASS, "")
            elif not_offered and len(not_offered) == len(covering):
                v.outcome, v.reason = NOT_OFFERED, not_offered[0].skip_reason
            else:
                v.reason = "; ".join(gaps) or "no selected test checks it"
        out[rid] = v
    return out


def _gaps(rid: str, records: list[TestRecord], covering: list[TestRecord], deselected: dict | None) -> list[str]:
    """What was not exercised for `rid`, each with the option (or cause) that would exercise it."""
    gaps: list[str] = []

    def add(text: str) -> None:
        if text and text not in gaps:
            gaps.append(text)
    for r in covering:
        if r.outcome == "skipped" and r.skip_reason.startswith((NOT_APPLICABLE, NOT_OFFERED_PREFIX)):
            continue  # an optional feature the agent does not offer: nothing of the requirement left out
        if r.outcome == "skipped":
            add(f"{_name(r.nodeid)} skipped: {r.skip_reason}")
        elif r.outcome != "passed":
            add(f"{_name(r.nodeid)} not reached: it stopped at {', '.join(r.violated)}")
    for r in records:
        for note_id, what, option in r.unchecked:
            if note_id == rid:
                add(f"not checked: {what} (needs {option})")
    if deselected:
        missed = [test for test, ids in sorted(deselected.items()) if rid in ids]
        if missed:
            add(f"deselected (-k): {', '.join(missed)}")
    return gaps


def unexpected_passes(result: dict[str, Verdict], expected: dict[str, list[str]]) -> list[str]:
    return [rid for rid in expected if rid in result and result[rid].outcome in (PASS, PARTIAL)]


def failing(result: dict[str, Verdict], level: str) -> list[str]:
    """IDs whose verdict makes the run non-conformant at `level` (expected failures excluded)."""
    bad = []
    for v in result.values():
        counts = v.level == "MUST" or (level == "should" and v.level == "SHOULD")
        if counts and v.outcome in (FAIL, ERROR) and not v.expected:
            bad.append(v.id)
    return bad


def counts(result: dict[str, Verdict], lvl: str) -> dict[str, list[str]]:
    group = [v for v in result.values() if v.level == lvl]
    return {k: [v.id for v in group if v.outcome == k] for k in OUTCOMES}


def summary_lines(result: dict[str, Verdict], level: str, prefix: str = "") -> list[str]:
    lines = []
    for lvl in ("MUST", "SHOULD"):
        group = [v for v in result.values() if v.level == lvl]
        if not group:
            continue
        if lvl == "SHOULD" and level == "must":
            lines.append(f"{prefix}SHOULD: {len(group)} not checked (run with --level should)")
            continue
        n = counts(result, lvl)
        if len(n[NOT_OFFERED]) == len(group):
            lines.append(f"{prefix}{lvl}: not offered by the agent ({len(group)} requirements not applicable)")
            continue
        text = f"{prefix}{lvl}: {len(n[PASS])}/{len(group)} pass"
        xfail = [i for i in n[FAIL] if result[i].expected]
        n[FAIL] = [i for i in n[FAIL] if not result[i].expected]
        for k in (PARTIAL, FAIL, ERROR, SKIP, NOT_SELECTED, NOT_OFFERED):
            if n[k]:
                text += f", {len(n[k])} {k.lower()} ({', '.join(n[k])})"
        if xfail:
            text += f", {len(xfail)} expected failure{'s' if len(xfail) > 1 else ''} ({', '.join(xfail)})"
        bad = n[FAIL] + n[ERROR]
        if bad:
            text += ", NOT conformant"
        elif xfail:
            text += ", NOT conformant (every failure is a listed expected failure: the gate passes)"
        elif not n[PASS] and not n[PARTIAL]:
            text += ", nothing checked (no verdict)"
        elif n[PARTIAL] or n[SKIP] or n[NOT_SELECTED]:
            text += ", conformant in what was checked only (not every check of every requirement ran)"
        else:
            text += ", conformant"
        lines.append(text)
    return lines


def write_json(path: str, *, result: dict[str, Verdict], records: list[TestRecord], meta: dict) -> None:
    data = dict(meta)
    data["counts"] = {lvl: {k: len(v) for k, v in counts(result, lvl).items()} for lvl in ("MUST", "SHOULD")}
    data["partial"] = [rid for rid, v in result.items() if v.outcome == PARTIAL]
    data["requirements"] = {rid: asdict(v) for rid, v in result.items()}
    data["tests"] = [asdict(r) for r in records]
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", "utf-8")


_ICON = {PASS: "✅", PARTIAL: "🟡", FAIL: "❌", ERROR: "💥", SKIP: "⏭️", NOT_SELECTED: "➖", NOT_OFFERED: "⚪"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: dict[str, Verdict], level: str, title: str, headline: str = "", notes=(), ext=None) -> str:
    """A Markdown summary for a pull-request comment or $GITHUB_STEP_SUMMARY: the run's headline (the
    same words as the exit code's), the summary lines, the notes, one row per requirement."""
    lines = [f"### {title}", ""]
    if headline:
        lines += [f"**{_cell(headline)}**", ""]
    lines += [f"**{line}**  " for line in summary_lines(result, level)]
    lines += [f"- {_cell(note)}" for note in notes]
    lines += ["", "| requirement | level | verdict | reason |", "| --- | --- | --- | --- |"]
    for v in result.values():
        note = " (expected)" if v.expected else ""
        lines.append(f"| {v.id} | {v.level} | {_ICON[v.outcome]} {v.outcome}{note} | {_cell(v.reason)} |")
    if ext:   # the extension profile's own table (PROTOCOL-EXT)
        lines += ["", "#### Extension profile `ext` (PROTOCOL-EXT)", ""]
        lines += [f"**{line}**  " for line in summary_lines(ext, level, "EXT ")]
        lines += ["", "| requirement | level | verdict | reason |", "| --- | --- | --- | --- |"]
        for v in ext.values():
            note = " (expected)" if v.expected else ""
            lines.append(f"| {v.id} | {v.level} | {_ICON[v.outcome]} {v.outcome}{note} | {_cell(v.reason)} |")
    return "\n".join(lines) + "\n"
