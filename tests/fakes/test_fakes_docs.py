"""Every python block of docs/FAKES.md runs here, so the examples cannot rot."""
from __future__ import annotations

from pathlib import Path

import pytest
from shared_helpers import markdown_example_tests, python_blocks

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "FAKES.md"


def blocks() -> list[tuple[int, str]]:
    return python_blocks(DOC)


def test_the_doc_has_examples_of_each_kind():
    found = blocks()
    assert len(found) >= 6
    assert any("def test_" in code for _, code in found)
    assert any("testing_server" in code for _, code in found) and any(".serve()" in code for _, code in found)


test_script_example_runs, test_pytest_example_passes = markdown_example_tests(DOC, "fakes_md")


def test_the_broken_agents_table_matches_the_catalogue():
    from fakes.broken import CATALOGUE, describe

    section = DOC.read_text(encoding="utf-8").split("## Broken agents", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `")}
    assert sorted(rows) == sorted(CATALOGUE)
    for name, cls in CATALOGUE.items():
        cells = [c.strip() for c in rows[name].split("|")]
        assert cells[2] == ", ".join(cls.violates) and cells[4] == describe(cls).replace("|", "/"), name
