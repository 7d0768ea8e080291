"""docs/SPEC.md, the code's requirement table and the owner's contract name the same IDs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from protos.requirements import REQUIREMENTS, Level, by_level, get

ROOT = Path(__file__).resolve().parents[2]
ID_RE = re.compile(r"AGT-[A-Z]+-[0-9]+")
# The contract lives beside the checkout (../shared) on developer machines and in CI.
CONTRACT = ROOT.parent / "shared" / "PROTOCOL-V1.md"


def _spec_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "docs" / "SPEC.md").read_text().splitlines():
        m = re.match(r"\| (AGT-[A-Z]+-[0-9]+) \| (MUST|SHOULD|MAY) \|", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} has two rows in docs/SPEC.md"
            rows[m.group(1)] = m.group(2)
    return rows


def test_spec_table_and_code_table_have_the_same_ids_and_levels():
    rows = _spec_rows()
    assert set(rows) == set(REQUIREMENTS), (
        f"only in SPEC.md: {sorted(set(rows) - set(REQUIREMENTS))}; "
        f"only in protos/requirements.py: {sorted(set(REQUIREMENTS) - set(rows))}")
    for rid, level in rows.items():
        assert REQUIREMENTS[rid].level.value == level, f"{rid}: SPEC.md says {level}"


def test_every_id_mentioned_in_spec_is_known():
    text = (ROOT / "docs" / "SPEC.md").read_text()
    assert set(ID_RE.findall(text)) <= set(REQUIREMENTS)


@pytest.mark.skipif(not CONTRACT.exists(), reason=f"contract not found at {CONTRACT}")
def test_code_table_matches_the_owners_contract():
    text = CONTRACT.read_text()
    contract = dict(re.findall(r"(AGT-[A-Z]+-[0-9]+) (MUST|SHOULD|MAY)", text))
    assert set(contract) == set(REQUIREMENTS)
    for rid, level in contract.items():
        assert REQUIREMENTS[rid].level.value == level


def test_registry_helpers():
    assert get("AGT-RUN-9").level is Level.MUST
    with pytest.raises(KeyError, match="AGT-NOPE-1"):
        get("AGT-NOPE-1")
    assert {r.id for r in by_level("SHOULD")} == {"AGT-STAGE-5", "AGT-SCHED-3"}
    assert len(by_level(Level.MUST)) == 27
