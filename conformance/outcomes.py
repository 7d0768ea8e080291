"""From pytest reports to test records, one failure block per defect: a repeat of a violation already
shown is one line, and a test of another requirement that it stopped is SKIP with the reason."""
from __future__ import annotations

from conformance import expected as expected_mod
from conformance.report import TestRecord
from conformance.violations import AgentUnavailable, find_violation


def _skip(rep, reason: str) -> None:
    """Turn a failed report into a skipped one (as pytest.skip would have made it)."""
    path, line = rep.location[0], (rep.location[1] or 0) + 1
    rep.outcome = "skipped"
    rep.longrepr = (path, line, f"Skipped: {reason}")


class Book:
    """The session's test records and the violations already shown (by requirement IDs)."""

    def __init__(self, expected: dict[str, list[str]], selected=None):
        self.expected = expected
        self.selected = selected   # None: every requirement
        self._records: dict[str, TestRecord] = {}
        self.shown: dict[tuple[str, ...], str] = {}   # violated IDs -> the test that showed the block
        self.unavailable: str | None = None           # the test where the agent stopped answering

    def records(self) -> list[TestRecord]:
        return list(self._records.values())

    def blocked_by_unavailable(self) -> str | None:
        if self.unavailable is None:
            return None
        return f"the agent stopped answering in {self.unavailable} (reported there)"

    def record(self, item, call, rep, ids: list[str], env) -> None:
        rec = self._records.setdefault(item.nodeid, TestRecord(item.nodeid, ids))
        if env is not None:
            rec.timelines = {job: env.timeline(job) for job in env.timelines}
            rec.unchecked = [list(u) for u in env.unchecked]
            for rid, what, option in env.unchecked:
                item.user_properties.append(("unchecked", f"{rid}: {what} (needs {option})"))
        rec.duration += rep.duration
        if rep.passed:
            if rep.when == "call":
                rec.outcome = "passed"
            return
        if rep.skipped and not hasattr(rep, "wasxfail"):
            rec.outcome = "skipped"
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            rec.skip_reason = reason.removeprefix("Skipped: ")
            return
        if rep.when == "teardown" and rec.outcome != "passed":
            return  # the first problem is the one to report
        exc = call.excinfo.value if call.excinfo else None
        found = find_violation(exc)
        if found is None:
            self._error(item, rep, rec, exc)
            return
        rec.outcome, rec.violated, rec.summary, rec.message = "failed", list(found.ids), found.summary, str(found)
        if self.selected is not None and not set(found.ids) & set(self.selected):
            rec.outcome, rec.violated = "skipped", []
            rec.skip_reason = (f"not checked: stopped by a violation of {', '.join(found.ids)}, which is not "
                               f"selected (--only / --skip): {found.summary}")
            _skip(rep, rec.skip_reason)
            return
        key = tuple(sorted(found.ids))
        first = self.shown.get(key)
        where = f"{item.location[0]}:{item.location[1] + 1}"
        if all(expected_mod.matches(self.expected, rid, found.summary) for rid in found.ids):
            rec.outcome = "xfailed"
            rep.outcome = "skipped"
            rep.wasxfail = f"expected failure: {', '.join(found.ids)}: {found.summary}"
            rep.longrepr = f"{found.render()}\n(test {item.nodeid}, {where})"
            return
        for rid in found.ids:  # junitxml writes the item's properties with the teardown report
            item.user_properties.append(("violated", rid))
        if first is None:
            self.shown[key] = item.nodeid
            rep.longrepr = f"{found.render()}\n(test {item.nodeid}, {where})"
        elif set(found.ids) & set(ids):
            rep.longrepr = (f"{', '.join(found.ids)}: {found.summary} (the defect shown in {first}; "
                            f"one failure block per defect)")
        else:
            # this test checks other requirements; the defect that stopped it is reported in `first`
            rec.outcome, rec.violated = "skipped", []
            rec.skip_reason = f"not checked: stopped by the {', '.join(found.ids)} failure shown in {first}"
            _skip(rep, rec.skip_reason)

    def _error(self, item, rep, rec, exc) -> None:
        rec.outcome = "error"
        rec.message = f"{type(exc).__name__}: {exc}" if exc is not None else str(rep.longrepr)
        if isinstance(exc, AgentUnavailable):
            if self.unavailable is None:
                self.unavailable = item.nodeid
                rep.longrepr = f"the agent stopped answering: {exc}\n(test {item.nodeid})"
            else:
                rec.outcome, rec.skip_reason = "skipped", self.blocked_by_unavailable()
                _skip(rep, rec.skip_reason)
