"""`agent-sim`: the simulator's command line; each subcommand is a module in simulator/commands/."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from simulator import commands as commands_pkg
from simulator.checks import ScenarioError
from simulator.commands._common import UsageError
from simulator.traces import TraceError

EPILOG = """\
examples:
  agent-sim run examples/demo.toml --out out/demo
  agent-sim sweep examples/cluster.toml --vary agents.count=50..200:50 --out out/sweep
  agent-sim plan examples/cluster.toml --target 'p95_wait<=30s' --vary agents.count
  agent-sim validate

Scenarios are TOML files (docs/SIMULATOR.md lists every key). Exit codes: 0 done, 1 a target
or check failed, 2 bad usage, bad scenario or bad trace (the message names the key and value).
"""


__all__ = ["main", "build_parser", "discover", "UsageError"]


def discover() -> list:
    """Every module of simulator.commands that defines NAME, HELP, add_arguments and run.

    A new subcommand (calibrate, replay, ...) is one new module there, nothing else to edit.
    Modules are listed by their ORDER (default 100), then name.
    """
    found = []
    for info in pkgutil.iter_modules(commands_pkg.__path__):
        module = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        if all(hasattr(module, a) for a in ("NAME", "HELP", "add_arguments", "run")):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-sim", description="Simulate many Agent-protocol agents under load, for capacity planning.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in discover():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           epilog=getattr(module, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except (ScenarioError, TraceError, UsageError) as exc:
        parser.exit(2, f"agent-sim {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
