"""The end of a run: the per-requirement verdicts and the run's verdict, then every report written from
them (JSON, Markdown here; JUnit in conformance.junit; stdout by the session), so that they cannot
disagree. Also written when the run never reached its tests (usage error, premise, unreachable agent)."""
from __future__ import annotations

from pathlib import Path

from conformance import SUITE_VERSION, report
from conformance.verdict import RunVerdict
from protos.requirements import REQUIREMENTS


def not_run(reason: str) -> dict[str, report.Verdict]:
    """Every requirement SKIP, `reason` saying why nothing ran."""
    return {rid: report.Verdict(rid, req.level.value, req.text, report.SKIP, f"not run: {reason}")
            for rid, req in REQUIREMENTS.items()}


def messages(records: list[report.TestRecord]) -> dict[str, str]:
    """Requirement ID -> the full text of its first violation (or error), with the test that saw it."""
    out: dict[str, str] = {}
    for r in records:
        if r.outcome in ("failed", "xfailed"):
            for rid in r.violated:
                out.setdefault(rid, f"{r.message}\n(seen in {r.nodeid})")
    for r in records:
        if r.outcome == "error":
            for rid in r.ids:
                out.setdefault(rid, f"{r.message}\n(test {r.nodeid})")
    return out


def write_json(path: str, run: RunVerdict, result: dict[str, report.Verdict], records: list[report.TestRecord],
               meta: dict) -> None:
    data = {"suite_version": SUITE_VERSION, "protocol": "v1", **meta, **run.as_dict()}
    data["expected_failures"] = [rid for rid, v in result.items() if v.outcome == report.FAIL and v.expected]
    report.write_json(path, result=result, records=records, meta=data)


def write_markdown(path: str, run: RunVerdict, result: dict[str, report.Verdict], level: str, title: str,
                   ext: dict | None = None) -> None:
    text = report.markdown(result, level, title, headline=run.headline(), notes=run.notes, ext=ext)
    Path(path).write_text(text, "utf-8")


def write_all(settings, run: RunVerdict, result, records, meta: dict, title: str, ext: dict | None = None) -> None:
    """JSON and Markdown, when asked for (paths from validated settings); `ext` the extension's table."""
    if settings.report_json:
        write_json(settings.report_json, run, result, records, meta)
    if settings.report_md:
        write_markdown(settings.report_md, run, result, settings.level, title, ext)


def write_raw(raw: dict, junit_path: str | None, run: RunVerdict) -> None:
    """After a usage error: every report the command line asked for whose folder exists, from the raw
    option values (the settings could not be built)."""
    from conformance import junit

    result = not_run(run.reason)
    level = "should" if str(raw.get("level") or "").lower() == "should" else "must"
    meta = {"target": raw.get("target"), "level": level, "conformant": False}
    title = f"agent-conformance {SUITE_VERSION}"
    for key, writer in (("report_json", lambda p: write_json(p, run, result, [], meta)),
                        ("report_md", lambda p: write_markdown(p, run, result, level, title)),
                        ("junit", lambda p: junit.write(p, run, result))):
        path = junit_path if key == "junit" else raw.get(key)
        if path and Path(path).resolve().parent.is_dir():
            try:
                writer(path)
            except OSError:
                pass
