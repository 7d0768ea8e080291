"""Requirement violations (the suite's only failure type) and the test <-> requirement registry."""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import pytest

from protos.requirements import ALL_REQUIREMENTS, REQUIREMENTS, Level

MARKER = "requirement"
MARKER_HELP = "requirement(*ids, needs=()): the PROTOCOL-V1 requirement IDs a conformance test checks"
__all__ = ["MARKER", "MARKER_HELP", "REGISTRY", "Coverage", "Violation", "AgentUnavailable", "also", "covers",
           "checked", "checks_done", "expect", "find_violation", "ids_covered", "violation",
           "RestartNotObserved"]

# Every suite test registers here at import: test name -> (requirement IDs, capabilities needed).
REGISTRY: dict[str, "Coverage"] = {}

# How many checks have run in this process: a test that passes without running one did not check
# anything (it returned early) and never counts as PASS.
_CHECKS = [0]


def checked() -> None:
    """Count one check (an expectation that was evaluated, whatever its result)."""
    _CHECKS[0] += 1


def checks_done() -> int:
    return _CHECKS[0]


# Extra IDs that violations raised in the current context also carry (see `also`).
_ALSO: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("conformance_also", default=())


@dataclass(frozen=True)
class Coverage:
    """What one suite test checks (`ids`) and what it needs from the options (`needs`)."""

    test: str
    ids: tuple[str, ...]
    needs: tuple[str, ...] = ()

    @property
    def level(self) -> Level:
        levels = {ALL_REQUIREMENTS[i].level for i in self.ids}
        return Level.MUST if Level.MUST in levels else Level.SHOULD


def covers(*ids: str, needs: Iterable[str] = ()) -> Callable:
    """Decorator: the test checks `ids` and needs the capabilities `needs` (else it is SKIP)."""
    for rid in ids:
        if rid not in ALL_REQUIREMENTS:
            raise KeyError(f"unknown requirement ID {rid!r}")
    needs = tuple(needs)

    def decorate(fn):
        key = f"{fn.__module__.rsplit('.', 1)[-1]}::{fn.__name__}"
        REGISTRY[key] = Coverage(key, tuple(ids), needs)
        return pytest.mark.requirement(*ids, needs=needs)(fn)
    return decorate


def ids_covered() -> dict[str, list[str]]:
    """Requirement ID -> the registered tests that check it (empty list when none does)."""
    out: dict[str, list[str]] = {rid: [] for rid in REQUIREMENTS}
    for cov in REGISTRY.values():
        for rid in cov.ids:
            out.setdefault(rid, []).append(cov.test)
    return out


@dataclass
class Violation(AssertionError):
    """An observed behaviour that breaks requirement(s) `ids`.

    `summary` is stable across runs (no UUIDs, no timings): the expected-failures file matches
    on its prefix. `details` holds the request sent, the status by name, what came back
    against what was expected, and the observed timeline.
    """

    ids: tuple[str, ...]
    summary: str
    details: str = ""
    timelines: dict = field(default_factory=dict)

    def __post_init__(self):
        AssertionError.__init__(self, self.render())

    def render(self) -> str:
        lines = []
        for rid in self.ids:
            req = ALL_REQUIREMENTS[rid]
            lines.append(f"{rid} {req.level.value}: {req.text}")
        lines.append(f"violation: {self.summary}")
        if self.details:
            lines.append(self.details)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    __hash__ = object.__hash__


def violation(rid: str | Iterable[str], summary: str, details: str = "", **kw) -> Violation:
    ids = (rid,) if isinstance(rid, str) else tuple(rid)
    extra = tuple(i for i in _ALSO.get() if i not in ids)
    return Violation(ids + extra, summary, details, **kw)


def expect(rid: str | Iterable[str], condition: object, summary: str, details: str | Callable[[], str] = "") -> None:
    """Raise a Violation of `rid` unless `condition` holds."""
    checked()
    if not condition:
        raise violation(rid, summary, details() if callable(details) else details)


@contextlib.contextmanager
def also(*ids: str) -> Iterator[None]:
    """Violations raised inside the block also name `ids` (e.g. a backwards state after a restart
    breaks AGT-STATE-1 and AGT-DUR-1)."""
    token = _ALSO.set(_ALSO.get() + tuple(ids))
    try:
        yield
    finally:
        _ALSO.reset(token)


def find_violation(exc: BaseException | None, _depth: int = 0) -> Violation | None:
    """The Violation inside `exc` (itself, an exception group member, a cause or context)."""
    if exc is None or _depth > 8:
        return None
    if isinstance(exc, Violation):
        return exc
    for inner in getattr(exc, "exceptions", ()) or ():
        found = find_violation(inner, _depth + 1)
        if found is not None:
            return found
    return find_violation(exc.__cause__, _depth + 1) or find_violation(exc.__context__, _depth + 1)


class AgentUnavailable(Exception):
    """The agent could not be reached (connection refused, deadline exceeded): an ERROR, not a FAIL."""


class RestartNotObserved(Exception):
    """A --kill-cmd or --restart-cmd returned, but the agent was not seen going down: an ERROR naming the
    option (the durability check would otherwise judge an agent that never restarted)."""
