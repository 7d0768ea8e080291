"""Every requirement ID of the contract is named by at least one reference-agent test."""
from __future__ import annotations

import re
from pathlib import Path

from protos.requirements import REQUIREMENTS

# "AGT-RUN-4", "AGT-RUN-4/5", "AGT-SCHED-1..3"
_MENTION = re.compile(r"AGT-([A-Z]+)-(\d+)((?:/\d+)*)(?:\.\.(\d+))?")


def mentioned(text: str) -> set[str]:
    found = set()
    for area, first, more, last in _MENTION.findall(text):
        numbers = {int(first), *(int(n) for n in more.split("/") if n)}
        if last:
            numbers |= set(range(int(first), int(last) + 1))
        found |= {f"AGT-{area}-{n}" for n in numbers}
    return found


def test_mention_parser():
    assert mentioned("AGT-RUN-4/5 and AGT-SCHED-1..3, AGT-ID-2") == {
        "AGT-RUN-4", "AGT-RUN-5", "AGT-SCHED-1", "AGT-SCHED-2", "AGT-SCHED-3", "AGT-ID-2"}


def test_every_requirement_has_a_reference_agent_test():
    here = Path(__file__).parent
    text = "".join(p.read_text() for p in sorted(here.glob("test_agent_*.py")) if p.name != Path(__file__).name)
    missing = sorted(set(REQUIREMENTS) - mentioned(text))
    assert not missing, f"no test of the reference agent names {missing}"
