"""`agent-conformance`: run the conformance suite against an agent and exit 0 (conformant), 1 or 2."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from conformance import SUITE_VERSION
from conformance.options import CLI, OPTIONS, OptionError, validate

EPILOG = """\
examples:
  # the embedded default: start the reference agent and test it
  agent-conformance

  # an agent that is already running, with a shared source folder and witness folder; the suite
  # restarts it with --restart-cmd and SIGKILLs it with --kill-cmd (both run by /bin/sh)
  agent-conformance --target 127.0.0.1:50051 --source-dir /srv/agent/source \\
      --witness-dir /srv/agent/witness --slots 4 --restart-cmd 'systemctl restart my-agent' \\
      --kill-cmd 'systemctl kill -s KILL my-agent' --junitxml conformance.xml --report-json conformance.json

  # an agent command that the suite starts, SIGKILLs and restarts itself (split into words, no shell)
  agent-conformance --agent-cmd './my-agent --listen {listen} --source {source} --state {state_dir} -n {slots}'

  # only some requirements, a Markdown summary for the pull request
  agent-conformance --only 'AGT-RUN-*,AGT-STATE-2' --report-md "$GITHUB_STEP_SUMMARY"

  # the source is remote: a command copies each test input into it
  agent-conformance --target agent.example:443 --tls-ca ca.pem --put-cmd 'aws s3 cp {path} s3://src/{uuid}'

exit codes (the last stdout line, the JUnit, JSON and Markdown reports all say the same):
  0  conformant at the chosen level (no failure beyond the listed expected failures)
  1  a requirement failed (FAIL or ERROR), or a listed expected failure passed
  2  no verdict: usage error, unmet premise (--witness-dir, --slots), agent unreachable, nothing checked
See docs/CONFORMANCE.md.
"""


class UsageError(Exception):
    """argparse's own refusal (unknown flag, missing value), raised instead of its exit."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="agent-conformance", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Check an Agent protocol v1 implementation against every requirement of PROTOCOL-V1. "
                    "Without --target or --agent-cmd it starts the reference agent and tests that.")
    for opt in OPTIONS:
        if opt.flag:
            p.add_argument(opt.cli, dest=opt.field, action="store_true", help=opt.help)
        else:
            p.add_argument(opt.cli, dest=opt.field, metavar=opt.metavar, default=opt.default, help=opt.help)
    p.add_argument("--junitxml", metavar="FILE", help="write JUnit XML (requirement IDs as properties)")
    p.add_argument("-k", metavar="EXPR", dest="keyword", help="run only the suite tests matching EXPR (pytest -k)")
    p.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing test")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.add_argument("--version", action="version", version=f"agent-conformance {SUITE_VERSION} (protocol v1)")
    return p


def _pytest_args(args: argparse.Namespace, ini: str) -> list[str]:
    """pytest's own flags only: the suite's settings travel in the plugin object."""
    here = Path(__file__).resolve().parent
    out = [str(here / "suite"), str(here / "suite_ext"), "-c", ini, "--rootdir", str(here), "-p", "conformance.plugin",
           "-p", "no:cacheprovider", "--no-header",
           "-o", "console_output_style=classic", "-rfE" if not args.quiet else "-q",
           # the CLI imported the suite's modules before pytest could rewrite them: nothing to tell the user
           "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if args.junitxml:
        out += [f"--junitxml={args.junitxml}", "-o", "junit_family=xunit2", "-o", "junit_suite_name=agent-conformance"]
    if args.keyword:
        out += ["-k", args.keyword]
    if args.exitfirst:
        out.append("-x")
    return out


def _usage_error(parser, argv, exc, raw: dict | None = None, junit: str | None = None) -> int:
    """Exit 2 with the error on stderr, the same verdict on stdout and in every report asked for (a gate
    that reads conformance.json finds it, not a missing file)."""
    from conformance import finish, verdict

    parser.print_usage(sys.stderr)
    print(f"agent-conformance: error: {exc}", file=sys.stderr)
    run = verdict.error(f"usage error: {exc}")
    if raw is None:   # argparse refused the line: take the report paths from what it can still read
        try:
            known, _ = parser.parse_known_args(argv)
            raw, junit = {opt.field: getattr(known, opt.field, None) for opt in OPTIONS}, known.junitxml
        except UsageError:
            raw = {}
    finish.write_raw(raw, junit, run)
    print(run.headline())
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _usage_error(parser, argv, exc)
    raw = {opt.field: getattr(args, opt.field) for opt in OPTIONS}
    try:
        settings = validate(raw, front=CLI)
        if args.junitxml and not Path(args.junitxml).resolve().parent.is_dir():
            raise OptionError(f"--junitxml {args.junitxml!r}: folder does not exist")
        if settings.expected and Path(settings.expected).is_file():
            from conformance import expected
            expected.load(settings.expected)
    except (OptionError, ValueError) as exc:
        return _usage_error(parser, argv, exc, raw, args.junitxml)
    import pytest

    from conformance.session import ConformancePlugin

    with tempfile.TemporaryDirectory(prefix="agent-conformance-ini-") as tmp:
        ini = os.path.join(tmp, "pytest.ini")
        Path(ini).write_text("[pytest]\n", "utf-8")
        plugin = ConformancePlugin(settings, header=not args.quiet)
        plugin.headline_last = True
        code = int(pytest.main(_pytest_args(args, ini), plugins=[plugin]))
    if plugin.run is not None:   # the run's verdict, the last line on stdout, as in every report
        print(plugin.run.headline(), flush=True)
        return plugin.run.exit_code
    # pytest stopped before the suite decided: 2 interrupted, 3 internal error, 4 usage error
    return {0: 0, 1: 1}.get(code, 2)


if __name__ == "__main__":
    sys.exit(main())
