"""Helpers shared by the subcommands: scenario loading, workers, the rich progress bar."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from simulator.api import default_workers
from simulator.scenario import Scenario


class UsageError(Exception):
    """A bad command-line value; `agent-sim` prints it and exits with status 2. It lives here, with
    the helpers every subcommand imports, so that no subcommand imports simulator.cli (which loads
    the subcommands by import_module: importing it back would be a cycle)."""


def add_scenario(parser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file (see docs/SIMULATOR.md)")
    parser.add_argument("--replications", type=positive_int, default=None, metavar="N",
                        help="override run.replications")
    parser.add_argument("--seed", type=nonneg_int, default=None, metavar="S", help="override run.seed")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help=f"processes for replications and points (default: {default_workers()})")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set",
                        help="change one scenario key without editing the file (repeatable), e.g. "
                             "--set workload.rate=40 --set network.source_bandwidth=40Gbit/s")


def add_precision(parser, default_metric: str = "wait_p95") -> None:
    parser.add_argument("--precision", type=fraction, default=None, metavar="REL",
                        help="add replications until the 95 %% interval of --precision-metric is within "
                             "+-REL of its mean (e.g. 0.05), up to --max-replications")
    parser.add_argument("--precision-metric", default=None, metavar="METRIC",
                        help=f"the metric --precision judges (default: {default_metric}, or plan's target metric)")
    parser.add_argument("--max-replications", type=positive_int, default=50, metavar="N",
                        help="the cap of --precision (default 50)")


def fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise_type(f"{text!r} is not a number")
    if not 0 < v < 1:
        raise_type(f"{text!r} must be a fraction in (0, 1), like 0.05 for 5 %")
    return v


def precision(args, metric: str):
    if getattr(args, "precision", None) is None:
        return None
    from simulator.sequential import Precision
    return Precision(args.precision, args.precision_metric or metric, args.max_replications)


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
    sc = apply_sets(sc, getattr(args, "set", []) or [])
    if args.seed is not None:
        sc = sc.with_value("run.seed", args.seed)
    if args.replications is not None:
        sc = sc.with_value("run.replications", args.replications)
    return sc


def apply_sets(sc: Scenario, specs: list[str]) -> Scenario:
    """--set KEY=VALUE, all at once (validated together); errors name the key, the value and the flag."""
    from simulator.checks import ScenarioError
    from simulator.keys import parse_set
    changes = {}
    for spec in specs:
        try:
            key, value = parse_set(spec)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        changes[key] = value
    if not changes:
        return sc
    try:
        return sc.with_values(changes)
    except ScenarioError as exc:
        raise ScenarioError(exc.key, exc.value, f"{exc.message} (from --set)") from None


def workers(args) -> int:
    return args.workers or default_workers()


@contextlib.contextmanager
def progress_bar(args, description: str, total: float | None, every: float | None = None):
    """A rich progress bar on stderr on a terminal; elsewhere (a log, CI) one line every `every`
    seconds; nothing with --quiet. Yields update(done, total)."""
    if args.quiet:
        yield lambda done, total=None: None
        return
    if not sys.stderr.isatty():
        line = _LineProgress(description, total, LINE_EVERY if every is None else every)
        line.start()
        try:
            yield line
        finally:
            line.stop()
        return
    bar = _TerminalBar(description, total)
    try:
        yield bar
    finally:
        bar.close()


class _TerminalBar:
    """A one-line progress bar on a terminal's stderr, redrawn in place at most ten times a second
    (stdlib only: the one bar did not justify a dependency)."""

    WIDTH = 30

    def __init__(self, description: str, total):
        import time
        self.clock = time.monotonic
        self.description, self.total = description, total
        self.t0 = self.drawn = self.clock()

    def __call__(self, done, new_total=None) -> None:
        if new_total:
            self.total = new_total
        now = self.clock()
        if now - self.drawn >= 0.1 or (self.total and done >= self.total):
            self.drawn = now
            sys.stderr.write("\r" + self.line(done, now - self.t0))
            sys.stderr.flush()

    def line(self, done, elapsed: float) -> str:
        if not self.total:
            return f"{self.description} {done:g} done, {elapsed:.0f} s elapsed"
        share = min(1.0, done / self.total)
        filled = round(share * self.WIDTH)
        left = f", ~{elapsed * (1 - share) / share:.0f} s left" if 0 < share < 1 else ""
        return (f"{self.description} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * share:5.1f}% "
                f"{elapsed:.0f} s elapsed{left}")

    def close(self) -> None:
        sys.stderr.write("\r\x1b[2K")  # the bar leaves no line behind, as before
        sys.stderr.flush()


LINE_EVERY = 5.0    # seconds between progress lines off a terminal


class _LineProgress:
    """Progress for a non-terminal: a line every `every` seconds from a heartbeat thread, so a
    long point or replication still shows the run is alive (with what is done and the time spent)."""

    def __init__(self, description: str, total, every: float):
        import threading
        import time
        self.clock = time.monotonic
        self.description, self.total, self.every = description, total, every
        self.t0 = self.clock()
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="agent-sim-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def __call__(self, done, new_total=None) -> None:
        self.done = done
        if new_total:
            self.total = new_total

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            total = self.total
            share = f" ({100 * self.done / total:.0f} %)" if total else ""
            print(f"{self.description}: {self.done:g}{f' of {total:g}' if total else ''}{share}, "
                  f"{self.clock() - self.t0:.0f} s elapsed", file=sys.stderr, flush=True)
