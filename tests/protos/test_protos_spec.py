"""docs/SPEC.md, the code's requirement table, the owner's contracts and the conformance suites name
the same IDs, profile by profile (v1 and ext)."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from protos.requirements import (ALL_REQUIREMENTS, EXT_REQUIREMENTS, PROFILES, REQUIREMENTS, Level, by_level,
                                 get, of_profile)

ROOT = Path(__file__).resolve().parents[2]
ID_RE = re.compile(r"AGT-[A-Z]+-[0-9]+")
# The contracts live beside the checkout (../shared) on developer machines and in CI.
SHARED = ROOT.parent / "shared"


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
    assert set(rows) == set(ALL_REQUIREMENTS), (
        f"only in SPEC.md: {sorted(set(rows) - set(ALL_REQUIREMENTS))}; "
        f"only in protos/requirements.py: {sorted(set(ALL_REQUIREMENTS) - set(rows))}")
    for rid, level in rows.items():
        assert ALL_REQUIREMENTS[rid].level.value == level, f"{rid}: SPEC.md says {level}"


def test_every_id_mentioned_in_spec_is_known():
    text = (ROOT / "docs" / "SPEC.md").read_text()
    assert set(ID_RE.findall(text)) <= set(ALL_REQUIREMENTS)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_code_table_matches_the_owners_contract(profile):
    path = SHARED / PROFILES[profile].contract
    if not path.exists():
        pytest.skip(f"contract not found at {path}")
    contract = dict(re.findall(r"(AGT-[A-Z]+-[0-9]+) (MUST|SHOULD|MAY)", path.read_text()))
    assert set(contract) == set(of_profile(profile))
    for rid, level in contract.items():
        assert get(rid).level.value == level


def _suite_markers(package: str) -> dict[str, set[str]]:
    """Test name -> the requirement IDs written in its decorators (`@covers("AGT-...")`, a
    `requirement` marker), for every test module of a suite package. Read from the source: importing
    the suite would apply its markers outside the conformance plugin."""
    found: dict[str, set[str]] = {}
    for folder in importlib.util.find_spec(package).submodule_search_locations:
        for path in sorted(Path(folder).glob("test_*.py")):
            tree = ast.parse(path.read_text())
            names = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Constant) for t in node.targets if isinstance(t, ast.Name)}
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    values = [c.value if isinstance(c, ast.Constant) else names.get(c.id)
                              for d in node.decorator_list for c in ast.walk(d) if isinstance(c, (ast.Constant, ast.Name))]
                    ids = {v for v in values if isinstance(v, str) and ID_RE.fullmatch(v)}
                    if ids and node.name.startswith(("test_", "Test")):
                        found[f"{path.stem}::{node.name}"] = ids
    return found


# The rule: every ID of a profile whose suite package exists is checked by a test of that package.
# A profile whose suite is not written yet is held to SPEC.md and its contract (above) only.
SUITES = [p for p in sorted(PROFILES) if importlib.util.find_spec(PROFILES[p].suite) is not None]


@pytest.mark.parametrize("profile", SUITES)
def test_every_id_of_a_profile_with_a_suite_is_checked_there(profile):
    markers = _suite_markers(PROFILES[profile].suite)
    named = set().union(*markers.values()) if markers else set()
    assert named <= set(ALL_REQUIREMENTS), f"unknown IDs in the suite: {sorted(named - set(ALL_REQUIREMENTS))}"
    missing = sorted(set(of_profile(profile)) - named)
    assert not missing, f"no test of {PROFILES[profile].suite} names {missing}"


def test_the_v1_suite_exists():
    assert "v1" in SUITES


def test_registry_helpers():
    assert get("AGT-RUN-9").level is Level.MUST
    assert get("AGT-EXT-9").level is Level.SHOULD and get("AGT-EXT-9").profile == "ext"
    with pytest.raises(KeyError, match="AGT-NOPE-1"):
        get("AGT-NOPE-1")
    with pytest.raises(KeyError, match="'v2'"):
        of_profile("v2")
    assert {r.id for r in by_level("SHOULD")} == {"AGT-STAGE-5", "AGT-SCHED-3"}
    assert len(by_level(Level.MUST)) == 27
    assert {r.id for r in by_level("SHOULD", "ext")} == {"AGT-EXT-9"}
    assert len(by_level(Level.MUST, profile="ext")) == 8


def test_v1_table_is_the_v1_profile_alone():
    assert set(REQUIREMENTS) == set(of_profile("v1")) and len(REQUIREMENTS) == 29
    assert set(EXT_REQUIREMENTS) == {f"AGT-EXT-{n}" for n in range(1, 10)}
    assert not set(REQUIREMENTS) & set(EXT_REQUIREMENTS)
    assert all(r.profile == "v1" for r in REQUIREMENTS.values())
    assert list(ALL_REQUIREMENTS) == [*REQUIREMENTS, *EXT_REQUIREMENTS]


def test_suite_markers_read_ids_from_decorators_and_module_constants(tmp_path, monkeypatch):
    pkg = tmp_path / "some_suite_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "test_a.py").write_text(
        'RID = "AGT-EXT-5"\n'
        '@covers(RID, "AGT-EXT-6", needs=("restart",))\ndef test_cancel(env): pass\n'
        '@pytest.mark.requirement("AGT-EXT-7")\nclass TestWatch: pass\n'
        'def test_plain(): "AGT-EXT-9"\n'
        '@covers("AGT-EXT-1")\ndef helper(): pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _suite_markers("some_suite_pkg") == {
        "test_a::test_cancel": {"AGT-EXT-5", "AGT-EXT-6"}, "test_a::TestWatch": {"AGT-EXT-7"}}
