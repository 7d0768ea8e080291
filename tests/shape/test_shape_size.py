"""Small modules and functions: no source file over 500 lines, no function over 80 (issue 22)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIRS = ("protos", "reference_agent", "fakes", "conformance", "simulator", "scripts", "bench", "tests")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def sources() -> list[Path]:
    """The hand-written Python of the packages, scripts, benchmarks and tests (generated *_pb2* code aside)."""
    return sorted(p for d in DIRS for p in (ROOT / d).rglob("*.py") if "_pb2" not in p.name)


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_no_source_file_over_500_lines():
    big = [f"{p.relative_to(ROOT)} ({n} lines)" for p in sources()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]
    assert not big, "split these modules:\n" + "\n".join(big)


def test_no_function_over_80_lines():
    long = [entry for p in sources() for entry in long_functions(p)]
    assert not long, "split these functions:\n" + "\n".join(long)


def test_the_function_check_can_fail(tmp_path, monkeypatch):
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    planted = tmp_path / "x.py"
    planted.write_text("def short():\n    return 1\n\n\ndef f():\n" + "    x = 1\n" * 90)
    assert long_functions(planted) == ["x.py:5 f (91 lines)"]
