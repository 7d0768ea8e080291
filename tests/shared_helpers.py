"""Helpers shared by the tests of every package: fresh ids and status codes by name."""
from __future__ import annotations

import uuid

from protos.client import AgentCallError


def new_id() -> str:
    """A fresh lower-case UUID: every test uses its own ids, so runs never collide."""
    return str(uuid.uuid4())


def code_of(fn, *args, **kwargs) -> str:
    """The status code name of a client call ("OK" when it succeeds)."""
    try:
        fn(*args, **kwargs)
    except AgentCallError as exc:
        return exc.code_name
    return "OK"


def python_blocks(doc) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of a Markdown file: docs whose examples run."""
    import re
    from pathlib import Path

    text = Path(doc).read_text(encoding="utf-8")
    block = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in block.finditer(text)]


def markdown_example_tests(doc, prefix: str):
    """The two tests that run a Markdown file's ```python blocks (the one executed-Markdown harness):
    `test_script_example_runs` executes each block without a test function as a script;
    `test_pytest_example_passes` runs each block with `def test_...` under pytest (pytester) and
    expects all its tests to pass. Bind both at module level:
        test_script_example_runs, test_pytest_example_passes = markdown_example_tests(DOC, "client_md")
    (the module needs `pytest_plugins = ["pytester"]`)."""
    import pytest

    blocks = python_blocks(doc)

    def block_id(value):
        return f"line{value}" if isinstance(value, int) else ""

    @pytest.mark.parametrize("line, code", [b for b in blocks if "def test_" not in b[1]], ids=block_id)
    def test_script_example_runs(line, code):
        exec(compile(code, f"{doc}:{line}", "exec"), {"__name__": f"{prefix}_line{line}"})

    @pytest.mark.parametrize("line, code", [b for b in blocks if "def test_" in b[1]], ids=block_id)
    def test_pytest_example_passes(pytester, line, code):
        pytester.makepyfile(**{f"test_{prefix}_line{line}": code})
        result = pytester.runpytest("-q", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=code.count("\ndef test_") + code.startswith("def test_"))

    return test_script_example_runs, test_pytest_example_passes
