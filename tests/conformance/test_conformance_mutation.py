"""The mutation driver's operators: each makes one change, logging and metrics calls are left alone."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

# the driver is a script of the checkout (scripts/mutation.py), not a module of the wheel
_SPEC = importlib.util.spec_from_file_location("mutation", Path(__file__).resolve().parents[2] / "scripts" / "mutation.py")
mutation = sys.modules.setdefault("mutation", importlib.util.module_from_spec(_SPEC))
_SPEC.loader.exec_module(mutation)

SOURCE = '''
def f(a, b):
    self.telemetry.log("x", n=a == b)
    if a < b and a is not None:
        g(a)
        return a + 1
    return True
'''


def test_every_point_changes_exactly_one_thing():
    tree = ast.parse(SOURCE)
    points = mutation.points(tree)
    ops = sorted({op for _, op in points})
    assert ops == ["bool", "compare", "drop-call", "negate-if", "number", "operator", "return-none"]
    original = ast.unparse(tree)
    for index, op in points:
        mutated, line, before, after = mutation.mutate(tree, index, op)
        assert ast.unparse(mutated) != original and before != after, (op, before)
        assert ast.unparse(tree) == original            # the tree itself is left as it was


def test_logging_and_metrics_calls_are_not_mutated():
    tree = ast.parse(SOURCE)
    lines = {getattr(list(ast.walk(tree))[i], "lineno", 0) for i, _ in mutation.points(tree)}
    assert 3 not in lines   # self.telemetry.log(...), and the comparison inside it
