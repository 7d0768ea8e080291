"""Every python block of docs/FAKES.md runs here, so the examples cannot rot."""
from __future__ import annotations

from pathlib import Path

import pytest
from shared_helpers import python_blocks

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "FAKES.md"


def blocks() -> list[tuple[int, str]]:
    return python_blocks(DOC)


def test_the_doc_has_examples_of_each_kind():
    found = blocks()
    assert len(found) >= 6
    assert any("def test_" in code for _, code in found)
    assert any("testing_server" in code for _, code in found) and any(".serve()" in code for _, code in found)


@pytest.mark.parametrize("line, code", [b for b in blocks() if "def test_" not in b[1]],
                         ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_script_example_runs(line, code):
    exec(compile(code, f"{DOC}:{line}", "exec"), {"__name__": f"fakes_md_line{line}"})


@pytest.mark.parametrize("line, code", [b for b in blocks() if "def test_" in b[1]],
                         ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_pytest_example_passes(pytester, line, code):
    pytester.makepyfile(**{f"test_fakes_md_line{line}": code})
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    tests = code.count("\ndef test_") + code.startswith("def test_")
    result.assert_outcomes(passed=tests)


def test_the_broken_agents_table_matches_the_catalogue():
    from fakes.broken import CATALOGUE, describe

    section = DOC.read_text(encoding="utf-8").split("## Broken agents", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `")}
    assert sorted(rows) == sorted(CATALOGUE)
    for name, cls in CATALOGUE.items():
        cells = [c.strip() for c in rows[name].split("|")]
        assert cells[2] == ", ".join(cls.violates) and cells[4] == describe(cls).replace("|", "/"), name
