"""`python -m fakes.broken NAME --listen HOST:PORT --source DIR`: serve one broken agent."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from protos.extras import extra_hint

EPILOG = """\
examples:
  python -m fakes.broken --list                      # every broken agent, its requirement IDs, its defect
  python -m fakes.broken ExceedsSlots --listen 127.0.0.1:0 --source ./src --slots 1
  python -m fakes.broken OkWithoutCode --listen 127.0.0.1:50052 --source ./src --state-dir ./st
  python -m fakes.broken ReportsDoneLate --source ./src --delay 10   # an agent whose defect has a delay

Each broken agent is the reference agent with exactly one defect. The first stdout line is
exactly "listening on HOST:PORT" (port 0 picks a free port). Without --state-dir a temporary
directory is used and removed at exit. SIGTERM or SIGINT stops it.
"""



def _listen(text: str) -> str:
    from reference_agent.config import ConfigError, parse_listen

    try:
        parse_listen(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fakes.broken", description="Serve one agent of the catalogue of broken agents.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="the broken agent's name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the broken agents and exit")
    parser.add_argument("--markdown", action="store_true",
                        help="print the catalogue as docs/FAKES.md's table and exit")
    parser.add_argument("--listen", type=_listen, default="127.0.0.1:0", metavar="HOST:PORT",
                        help="address to serve on (default 127.0.0.1:0, a free port)")
    parser.add_argument("--source", metavar="DIR", help="file source: a directory (or an fsspec URL)")
    parser.add_argument("--state-dir", metavar="DIR", help="journal, cache and job directories (default: temporary)")
    parser.add_argument("--slots", type=_positive_int, default=2, metavar="N", help="job slots (default 2)")
    parser.add_argument("--python", action="append", default=[], metavar="PATH",
                        help="an extra interpreter (repeatable), as for reference-agent serve")
    parser.add_argument("--no-path-pythons", action="store_true", help="do not look for pythons on PATH")
    parser.add_argument("--log", action="store_true", help="write the agent's JSON log lines to stderr")
    parser.add_argument("--delay", type=_seconds, metavar="SECONDS",
                        help="the seconds that the agent's defect talks of (agents with a "
                             f"{'/'.join(DELAY_ATTRIBUTES)} attribute; default: the agent's own)")
    return parser


# the class attributes in which a broken agent keeps the seconds its defect talks of
DELAY_ATTRIBUTES = ("DELAY", "AFTER", "RACE_WINDOW")


def _positive_int(text: str) -> int:
    from reference_agent.cli import positive_int  # the same check as reference-agent --slots

    return positive_int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:   # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, 3600], got {text!r}")
    return value


def delay_attribute(cls: type) -> str | None:
    """The attribute that holds the seconds of cls's defect, or None."""
    return next((name for name in DELAY_ATTRIBUTES if isinstance(getattr(cls, name, None), (int, float))), None)


def with_delay(cls: type, seconds: float) -> type:
    """A subclass of the broken agent `cls` with its delay set to `seconds` (same name and defect)."""
    name = delay_attribute(cls)
    if name is None:
        raise ValueError(f"{cls.__name__} has no delay to set")
    return type(cls.__name__, (cls,), {name: float(seconds), "__doc__": cls.__doc__})


def listing() -> str:
    from fakes.broken import CATALOGUE, describe

    width = max(map(len, CATALOGUE))
    return "\n".join(f"{name:<{width}}  {', '.join(cls.violates):<24}  {describe(cls)}"
                     for name, cls in sorted(CATALOGUE.items()))


def main(argv: list[str] | None = None) -> int:
    with extra_hint("python -m fakes.broken", "agent"):
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from fakes.broken import CATALOGUE, build_server, markdown_table

    if args.list:
        print(listing())
        return 0
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    if not args.name:
        parser.error("give a broken agent's NAME (see --list)")
    if args.name not in CATALOGUE:
        parser.error(f"unknown broken agent {args.name!r}; known: {', '.join(sorted(CATALOGUE))}")
    if not args.source:
        parser.error("--source DIR is required to serve")
    if "://" not in args.source and not os.path.isdir(args.source):
        parser.error(f"--source {args.source!r}: no such directory")
    agent = CATALOGUE[args.name]
    if args.delay is not None:
        if delay_attribute(agent) is None:
            takes = sorted(n for n, c in CATALOGUE.items() if delay_attribute(c))
            parser.error(f"--delay: {args.name} has no delay; agents that take one: {', '.join(takes)}")
        agent = with_delay(agent, args.delay)

    from reference_agent.config import AgentConfig, ConfigError
    from reference_agent.telemetry import Telemetry

    from reference_agent.server import serve_until_signalled

    with tempfile.TemporaryDirectory(prefix="broken-agent-") as tmp:
        try:
            config = AgentConfig(listen=args.listen, source=args.source, state_dir=args.state_dir or tmp,
                                 slots=args.slots, pythons=tuple(args.python),
                                 discover_path=not args.no_path_pythons, log_rpcs=args.log).validate()
            server = build_server(agent, config, Telemetry(sys.stderr if args.log else None))
            # Without --state-dir nothing survives the exit, so running jobs are stopped with it.
            return serve_until_signalled(server, "python -m fakes.broken", stop_jobs=args.state_dir is None)
        except ConfigError as exc:
            parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
