"""Helpers shared by the subcommands: scenario loading, workers, the rich progress bar."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from simulator.api import default_workers
from simulator.cli import UsageError
from simulator.scenario import Scenario


def add_scenario(parser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file (see docs/SIMULATOR.md)")
    parser.add_argument("--replications", type=positive_int, default=None, metavar="N",
                        help="override run.replications")
    parser.add_argument("--seed", type=nonneg_int, default=None, metavar="S", help="override run.seed")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help=f"processes for replications and points (default: {default_workers()})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise_type(f"{text!r} is not an integer")
    if v < 1:
        raise_type(f"{text!r} must be >= 1")
    return v


def nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise_type(f"{text!r} is not an integer")
    if v < 0:
        raise_type(f"{text!r} must be >= 0")
    return v


def raise_type(message: str):
    import argparse
    raise argparse.ArgumentTypeError(message)


def load(args) -> Scenario:
    path = Path(args.scenario)
    if not path.is_file():
        raise UsageError(f"scenario file {str(path)!r} does not exist")
    sc = Scenario.from_toml(path)
    if args.seed is not None:
        sc = sc.with_value("run.seed", args.seed)
    if args.replications is not None:
        sc = sc.with_value("run.replications", args.replications)
    return sc


def workers(args) -> int:
    return args.workers or default_workers()


@contextlib.contextmanager
def progress_bar(args, description: str, total: float | None):
    """A rich progress bar on stderr (only on a terminal, and not with --quiet); yields update(done, total)."""
    if args.quiet or not sys.stderr.isatty():
        yield lambda done, total=None: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.console import Console
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(done, new_total=None):
            bar.update(task, completed=done, total=new_total or total)
        yield update
