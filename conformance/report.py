"""Per-requirement verdicts (PASS, FAIL, SKIP, ERROR) from test records; summary lines and JSON report."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protos.requirements import REQUIREMENTS, Level

PASS, FAIL, SKIP, ERROR = "PASS", "FAIL", "SKIP", "ERROR"


@dataclass
class TestRecord:
    """One suite test's outcome. `violated` are the IDs its failure names (may lie outside `ids`)."""

    nodeid: str
    ids: list[str]
    outcome: str = "passed"          # passed, failed, error, skipped, xfailed
    violated: list[str] = field(default_factory=list)
    summary: str = ""
    message: str = ""
    skip_reason: str = ""
    timelines: dict = field(default_factory=dict)
    duration: float = 0.0


@dataclass
class Verdict:
    id: str
    level: str
    text: str
    outcome: str
    reason: str = ""
    expected: bool = False
    tests: list[str] = field(default_factory=list)


def verdicts(records: list[TestRecord], level: str) -> dict[str, Verdict]:
    out = {}
    for rid, req in REQUIREMENTS.items():
        v = Verdict(rid, req.level.value, req.text, SKIP)
        covering = [r for r in records if rid in r.ids]
        v.tests = [r.nodeid for r in covering]
        failing = [r for r in records if rid in r.violated and r.outcome in ("failed", "xfailed")]
        if req.level is Level.SHOULD and level == "must":
            v.reason = "SHOULD requirement: run with --level should"
        elif [r for r in failing if r.outcome == "failed"]:
            first = next(r for r in failing if r.outcome == "failed")
            v.outcome, v.reason = FAIL, f"{first.summary} ({first.nodeid})"
        elif failing:
            v.outcome, v.reason, v.expected = FAIL, f"expected failure: {failing[0].summary}", True
        elif [r for r in covering if r.outcome == "error"]:
            first = next(r for r in covering if r.outcome == "error")
            v.outcome, v.reason = ERROR, f"{first.message.splitlines()[0] if first.message else 'error'} ({first.nodeid})"
        elif [r for r in covering if r.outcome == "passed"]:
            v.outcome = PASS
        elif covering:
            reasons = []
            for r in covering:
                why = r.skip_reason if r.outcome == "skipped" else f"not reached: {r.nodeid} stopped at {', '.join(r.violated)}"
                if why and why not in reasons:
                    reasons.append(why)
            v.reason = "; ".join(reasons)
        else:
            v.reason = "no selected test checks it"
        out[rid] = v
    return out


def unexpected_passes(result: dict[str, Verdict], expected: dict[str, list[str]]) -> list[str]:
    return [rid for rid in expected if rid in result and result[rid].outcome == PASS]


def failing(result: dict[str, Verdict], level: str) -> list[str]:
    """IDs whose verdict makes the run non-conformant at `level` (expected failures excluded)."""
    bad = []
    for v in result.values():
        counts = v.level == "MUST" or (level == "should" and v.level == "SHOULD")
        if counts and v.outcome in (FAIL, ERROR) and not v.expected:
            bad.append(v.id)
    return bad


def summary_lines(result: dict[str, Verdict], level: str) -> list[str]:
    lines = []
    for lvl in ("MUST", "SHOULD"):
        group = [v for v in result.values() if v.level == lvl]
        if lvl == "SHOULD" and level == "must":
            lines.append(f"SHOULD: {len(group)} not checked (run with --level should)")
            continue
        n = {k: [v.id for v in group if v.outcome == k] for k in (PASS, FAIL, ERROR, SKIP)}
        text = f"{lvl}: {len(n[PASS])}/{len(group)} pass"
        for k in (FAIL, ERROR, SKIP):
            if n[k]:
                text += f", {len(n[k])} {k.lower()} ({', '.join(n[k])})"
        bad = [i for i in n[FAIL] + n[ERROR] if not result[i].expected]
        if bad:
            text += ", NOT conformant"
        elif n[SKIP]:
            text += ", conformant in what was checked"
        else:
            text += ", conformant"
        lines.append(text)
    return lines


def write_json(path: str, *, result: dict[str, Verdict], records: list[TestRecord], meta: dict) -> None:
    data = dict(meta)
    data["requirements"] = {rid: asdict(v) for rid, v in result.items()}
    data["tests"] = [asdict(r) for r in records]
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", "utf-8")
