"""`python scripts/mutation.py` (`make mutation`): mutation testing of the reference agent with the
conformance suite as the only test. A developer's tool on a git checkout (it takes the agent as
committed, by `git archive`), so it lives in scripts/, outside the wheel. Each mutant is one AST operator swap in a copy of reference_agent/ put first on PYTHONPATH
(the suite starts the agent as a subprocess, so mutants live on disk, never in the working tree)."""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("domain.py", "stagein.py", "scheduling.py", "transitions.py", "recovery.py", "tables.py", "staging.py",
         "journal.py", "jobrecord.py", "servicer.py", "supervision.py")
SWAPS = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE,
         ast.GtE: ast.Gt, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
         ast.And: ast.Or, ast.Or: ast.And, ast.Add: ast.Sub, ast.Sub: ast.Add}
# calls whose mutation only changes what the operator sees (logs, metrics): outside the contract
QUIET_CALLS = {"log", "inc", "job_transition", "observe", "set"}


@dataclass
class Mutant:
    file: str
    line: int
    operator: str
    before: str
    after: str = ""
    outcome: str = ""      # killed, survived, timeout
    seconds: float = 0.0
    detail: str = ""


def _quiet(node: ast.AST, parents: dict) -> bool:
    if isinstance(node, ast.Expr):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUIET_CALLS:
        return True
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUIET_CALLS:
            return True
    return False


def points(tree: ast.Module) -> list[tuple[int, str]]:
    """(node index in ast.walk order, operator name) for every mutation this tree allows."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if _quiet(node, parents):
            continue
        if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            out.append((i, "compare"))
        elif isinstance(node, (ast.BoolOp, ast.BinOp)) and type(node.op) in SWAPS:
            out.append((i, "operator"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            out.append((i, "bool"))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            out.append((i, "number"))
        elif isinstance(node, ast.If):
            out.append((i, "negate-if"))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            out.append((i, "drop-call"))
        elif isinstance(node, ast.Return) and node.value is not None:
            out.append((i, "return-none"))
    return out


def mutate(tree: ast.Module, index: int, operator: str) -> tuple[ast.Module, int, str, str]:
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[index]
    before = ast.unparse(node).splitlines()[0][:100]
    if operator == "compare":
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif operator == "operator":
        node.op = SWAPS[type(node.op)]()
    elif operator == "bool":
        node.value = not node.value
    elif operator == "number":
        node.value = node.value + 1
    elif operator == "negate-if":
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
    elif operator == "drop-call":
        node.value = ast.Constant(value=None)
    elif operator == "return-none":
        node.value = ast.Constant(value=None)
    ast.fix_missing_locations(tree)
    return tree, node.lineno, before, ast.unparse(node).splitlines()[0][:100]


def base_copy(dest: Path, ref: str) -> Path:
    """reference_agent/ as committed at `ref` (others may be editing the working tree), in dest."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", ref, "reference_agent"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "reference_agent"


def run_suite(pythonpath: Path, workdir: Path, timeout: float, level: str) -> tuple[str, float, str]:
    agent = (f"{sys.executable} -m reference_agent serve --listen {{listen}} --source {{source}} "
             f"--state-dir {{state_dir}} --slots {{slots}} --no-path-pythons")
    report = workdir / "report.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "conformance.cli", "--level", level, "-x", "-q", "--agent-cmd", agent,
           "--max-request-bytes", "4194304", "--report-json", str(report)]
    env = dict(os.environ, PYTHONPATH=f"{pythonpath}{os.pathsep}{ROOT}")
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, f"no verdict within {timeout:.0f} s"
    took = time.monotonic() - start
    if done.returncode == 0:
        return "survived", took, ""
    failed = []
    if report.exists():
        data = json.loads(report.read_text())
        failed = [rid for rid, v in data["requirements"].items() if v["outcome"] in ("FAIL", "ERROR")]
    why = ", ".join(failed) or (done.stdout.strip().splitlines() or ["exit %d" % done.returncode])[-1][:200]
    return "killed", took, why


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/mutation.py", description=__doc__)
    p.add_argument("--sample", type=int, default=40, help="mutants to run, drawn at random (default 40)")
    p.add_argument("--seed", type=int, default=12, help="seed of the sample (default 12)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per mutant (default 180)")
    p.add_argument("--budget", type=float, default=3000.0, help="stop starting mutants after this many seconds")
    p.add_argument("--level", default="must", choices=("must", "should"))
    p.add_argument("--ref", default="HEAD", help="the commit whose reference_agent/ is mutated (default HEAD)")
    p.add_argument("--out", default="out/mutation.json", help="results (JSON); a line per mutant on stdout")
    p.add_argument("--mutant", action="append", default=[], metavar="FILE:LINE:OPERATOR",
                   help="run these mutants instead of a sample (e.g. staging.py:186:operator; repeatable)")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="agent-mutation-") as tmp:
        tmp = Path(tmp)
        base = base_copy(tmp / "base", args.ref)
        trees = {f: ast.parse((base / f).read_text()) for f in FILES}
        universe = [(f, i, op) for f in FILES for i, op in points(trees[f])]
        sample = rng.sample(universe, min(args.sample, len(universe)))
        if args.mutant:
            wanted = {tuple(m.rsplit(":", 2)) for m in args.mutant}
            sample = [(f, i, op) for f, i, op in universe
                      if (f, str(getattr(list(ast.walk(trees[f]))[i], "lineno", 0)), op) in wanted]
        work = tmp / "work"
        work.mkdir()
        outcome, took, detail = run_suite(base.parent, work, args.timeout, args.level)
        if outcome != "survived":
            print(f"the unmutated reference agent does not pass the suite ({outcome}: {detail}): no score", flush=True)
            return 2
        print(f"unmutated reference agent: passes in {took:.1f} s", flush=True)
        start = time.monotonic()
        results: list[Mutant] = []
        print(f"{len(universe)} mutation points in {', '.join(FILES)}; sample of {len(sample)} (seed {args.seed})",
              flush=True)
        for n, (f, index, op) in enumerate(sample, 1):
            if time.monotonic() - start > args.budget:
                print(f"budget of {args.budget:.0f} s spent: {len(results)} of {len(sample)} mutants run", flush=True)
                break
            tree, line, before, after = mutate(trees[f], index, op)
            mutant_root = tmp / "mutant"
            shutil.rmtree(mutant_root, ignore_errors=True)
            shutil.copytree(base.parent, mutant_root)
            (mutant_root / "reference_agent" / f).write_text(ast.unparse(tree))
            m = Mutant(f"reference_agent/{f}", line, op, before, after)
            m.outcome, m.seconds, m.detail = run_suite(mutant_root, work, args.timeout, args.level)
            results.append(m)
            print(f"[{n}/{len(sample)}] {m.outcome:<8} {m.seconds:5.1f}s {m.file}:{m.line} {op}: "
                  f"{before!r} -> {after!r} {m.detail}", flush=True)
        killed = sum(m.outcome in ("killed", "timeout") for m in results)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"points": len(universe), "sample": len(sample), "run": len(results),
                                   "killed": killed, "seed": args.seed, "ref": args.ref,
                                   "mutants": [asdict(m) for m in results]}, indent=2) + "\n")
        print(f"mutation score: {killed}/{len(results)} killed ({100 * killed / max(1, len(results)):.0f} %), "
              f"{len(results) - killed} survived; results in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
