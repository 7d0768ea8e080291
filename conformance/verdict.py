"""The run's one verdict: exit code, gate, verdict and reason, computed once and carried word for word
by every report (stdout, JUnit, JSON, Markdown), in every outcome, including usage errors and an agent
that cannot be reached."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from conformance import report

GATE = {0: "PASS", 1: "FAIL", 2: "ERROR"}
MEANING = {
    0: "conformant at the chosen level: no requirement failed beyond the listed expected failures",
    1: "a requirement failed (FAIL or ERROR), or a listed expected failure passed",
    2: "no verdict: a usage error, an unmet premise, the agent unreachable, or nothing selected",
}


@dataclass
class RunVerdict:
    """`exit_code` 0/1/2 and `gate` PASS/FAIL/ERROR say the same; `verdict` is what may be claimed of
    the agent, `reason` why. `conformant` is True only when nothing failed at all (an expected failure
    is still a failure of the agent, though the gate passes)."""

    exit_code: int
    verdict: str
    reason: str
    conformant: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def gate(self) -> str:
        return GATE[self.exit_code]

    def headline(self) -> str:
        return f"agent-conformance: exit {self.exit_code} (gate {self.gate}): {self.verdict}: {self.reason}"

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(gate=self.gate, headline=self.headline(), exit_meaning=MEANING[self.exit_code])
        return out


def error(reason: str, verdict: str = "no verdict") -> RunVerdict:
    return RunVerdict(2, verdict, reason)


def decide(result: dict[str, report.Verdict], level: str, surprise: list[str], expected_file: str | None
           ) -> RunVerdict:
    """The verdict of a run that reached its tests."""
    bad = report.failing(result, level)
    counted = [v for v in result.values() if (v.level == "MUST" or level == "should")
               and v.outcome != report.NOT_OFFERED]   # an extension not offered is no requirement here
    xfail = [v.id for v in counted if v.outcome == report.FAIL and v.expected]
    if bad:
        first = result[bad[0]]
        more = f" (and {len(bad) - 1} more: {', '.join(bad[1:])})" if len(bad) > 1 else ""
        return RunVerdict(1, "NOT conformant", f"{first.id} {first.outcome}: {first.reason}{more}")
    if surprise:
        return RunVerdict(1, "the expected-failures file is out of date", (
            f"{', '.join(surprise)} listed in {expected_file} as expected to fail but PASSED: remove the line(s) "
            f"(or rerun with --update-expected)"))
    if xfail:
        return RunVerdict(0, "NOT conformant, but every failure is a listed expected failure", (
            f"{', '.join(xfail)} failed as listed in {expected_file}; nothing else failed"))
    by = {k: [v.id for v in counted if v.outcome == k] for k in report.OUTCOMES}
    passed = by[report.PASS]
    if not passed and not by[report.PARTIAL]:
        return RunVerdict(2, "no verdict", "no requirement was checked (every test skipped or deselected)")
    if by[report.PARTIAL] or by[report.SKIP] or by[report.NOT_SELECTED]:
        gaps = [f"{k} {', '.join(by[k])}" for k in (report.PARTIAL, report.SKIP) if by[k]]
        if by[report.NOT_SELECTED]:
            gaps.append(f"{len(by[report.NOT_SELECTED])} not selected")
        return RunVerdict(0, "conformant in what was checked only", (
            f"{len(passed)} of {len(counted)} requirements PASS; not fully checked: {'; '.join(gaps)}"))
    ext = [rid for rid in passed if rid.startswith("AGT-EXT-")]
    what = f"{len(passed) - len(ext)} v1" + (f" and {len(ext)} extension (ext)" if ext else "")
    return RunVerdict(0, "conformant", f"{what} requirements of {len(counted)} PASS "
                                       f"({'MUST and SHOULD' if level == 'should' else 'MUST'})", conformant=True)
