"""`agent-conformance`: run the conformance suite against an agent and exit 0 (conformant), 1 or 2."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from conformance import SUITE_VERSION, plugin
from conformance.options import OptionError, validate

EPILOG = """\
examples:
  # the embedded default: start the reference agent and test it
  agent-conformance

  # an agent that is already running, with a shared source folder and witness folder
  agent-conformance --target 127.0.0.1:50051 --source-dir /srv/agent/source \\
      --witness-dir /srv/agent/witness --slots 4 --restart-cmd 'systemctl restart my-agent' \\
      --junitxml conformance.xml --report-json conformance.json

  # an agent command that the suite starts, SIGKILLs and restarts itself
  agent-conformance --agent-cmd './my-agent --listen {listen} --source {source} --state {state_dir} -n {slots}'

  # the source is remote: a command copies each test input into it
  agent-conformance --target agent.example:443 --tls-ca ca.pem --put-cmd 'aws s3 cp {path} s3://src/{uuid}'

exit codes: 0 conformant at the chosen level, 1 a requirement failed (or an expected failure
passed), 2 usage error or agent unreachable. See docs/CONFORMANCE.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent-conformance", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Check an Agent protocol v1 implementation against every requirement of PROTOCOL-V1. "
                    "Without --target or --agent-cmd it starts the reference agent and tests that.")
    p.add_argument("--target", metavar="HOST:PORT", help="address of a running agent")
    p.add_argument("--agent-cmd", metavar="CMD",
                   help="start the agent with CMD (placeholders {listen} {source} {state_dir} {slots}); "
                        "it must print 'listening on HOST:PORT'; enables the SIGKILL restart check")
    p.add_argument("--source-dir", metavar="DIR", help="folder that the agent reads as its file source")
    p.add_argument("--put-cmd", metavar="CMD", help="shell command that puts {path} into the source as {uuid}")
    p.add_argument("--witness-dir", metavar="DIR",
                   help="folder that the agent's jobs can write at the same path (enables execution checks)")
    p.add_argument("--slots", metavar="N", help="the agent's slot count (enables the scheduling checks)")
    p.add_argument("--restart-cmd", metavar="CMD", help="shell command that restarts the agent (enables AGT-DUR-1)")
    p.add_argument("--python-version", metavar="SPEC", help="a python_version the agent can satisfy (default 3)")
    p.add_argument("--level", default="must", metavar="must|should", help="requirements that must pass (default must)")
    p.add_argument("--time-scale", default="1", metavar="X", help="multiply every deadline and interval (default 1)")
    p.add_argument("--tls-ca", metavar="FILE", help="connect with TLS, trusting this CA (PEM)")
    p.add_argument("--tls-cert", metavar="FILE", help="client certificate for mutual TLS (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="client key for mutual TLS (PEM)")
    p.add_argument("--junitxml", metavar="FILE", help="write JUnit XML (requirement IDs as properties)")
    p.add_argument("--report-json", metavar="FILE", help="write the JSON report (per requirement, timelines)")
    p.add_argument("--expected-failures", metavar="FILE", help="known failures, lines 'ID  # message prefix'")
    p.add_argument("--update-expected", action="store_true", help="rewrite --expected-failures from this run")
    p.add_argument("--hypothesis-profile", default="ci", metavar="ci|deep",
                   help="depth of the stateful test (ci: derandomized, short; deep: random, longer)")
    p.add_argument("--max-request-bytes", metavar="N",
                   help="the agent's request size limit: a larger request must get RESOURCE_EXHAUSTED")
    p.add_argument("-k", metavar="EXPR", dest="keyword", help="run only the tests matching EXPR (pytest -k)")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.add_argument("--version", action="version", version=f"agent-conformance {SUITE_VERSION} (protocol v1)")
    return p


def _pytest_args(args: argparse.Namespace, ini: str) -> list[str]:
    suite = str(Path(__file__).resolve().parent / "suite")
    out = [suite, "-c", ini, "--rootdir", str(Path(__file__).resolve().parent), "-p", "no:cacheprovider",
           "-o", "console_output_style=classic", "-rfEs" if not args.quiet else "-q"]
    pairs = [(plugin.TARGET, args.target), (plugin.AGENT_CMD, args.agent_cmd), (plugin.SOURCE_DIR, args.source_dir),
             (plugin.PUT_CMD, args.put_cmd), (plugin.WITNESS_DIR, args.witness_dir), (plugin.SLOTS, args.slots),
             (plugin.RESTART_CMD, args.restart_cmd), (plugin.PYTHON_VERSION, args.python_version),
             (plugin.LEVEL, args.level), (plugin.TIME_SCALE, args.time_scale), (plugin.TLS_CA, args.tls_ca),
             (plugin.TLS_CERT, args.tls_cert), (plugin.TLS_KEY, args.tls_key),
             (plugin.REPORT_JSON, args.report_json), (plugin.EXPECTED, args.expected_failures),
             (plugin.PROFILE, args.hypothesis_profile), (plugin.MAX_REQUEST, args.max_request_bytes)]
    out += [f"{opt}={value}" for opt, value in pairs if value is not None]
    if args.update_expected:
        out.append(plugin.UPDATE_EXPECTED)
    if not args.target and not args.agent_cmd:
        out.append(plugin.EMBEDDED)
    if args.junitxml:
        out += [f"--junitxml={args.junitxml}", "-o", "junit_family=xunit2", "-o", "junit_suite_name=agent-conformance"]
    if args.keyword:
        out += ["-k", args.keyword]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    raw = {"target": args.target, "agent_cmd": args.agent_cmd, "source_dir": args.source_dir, "put_cmd": args.put_cmd,
           "witness_dir": args.witness_dir, "slots": args.slots, "restart_cmd": args.restart_cmd,
           "python_version": args.python_version, "level": args.level, "time_scale": args.time_scale,
           "tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
           "report_json": args.report_json, "expected": args.expected_failures,
           "update_expected": args.update_expected, "profile": args.hypothesis_profile,
           "max_request_bytes": args.max_request_bytes}
    try:
        validate(raw)
        if args.junitxml and not Path(args.junitxml).resolve().parent.is_dir():
            raise OptionError(f"--junitxml {args.junitxml!r}: folder does not exist")
        if args.expected_failures and Path(args.expected_failures).is_file():
            from conformance import expected
            expected.load(args.expected_failures)
    except (OptionError, ValueError) as exc:
        parser.print_usage(sys.stderr)
        print(f"agent-conformance: error: {exc}", file=sys.stderr)
        return 2
    import pytest

    with tempfile.TemporaryDirectory(prefix="agent-conformance-ini-") as tmp:
        ini = os.path.join(tmp, "pytest.ini")
        Path(ini).write_text("[pytest]\n", "utf-8")
        code = int(pytest.main(_pytest_args(args, ini)))
    # pytest: 0 ok, 1 tests failed, 2 interrupted (or the suite's own exit 2), 3 internal, 4 usage, 5 none ran
    return {0: 0, 1: 1}.get(code, 2)


if __name__ == "__main__":
    sys.exit(main())
