"""`reference-agent`: serve the Agent protocol, and show the journal's jobs to the operator."""
from __future__ import annotations

import argparse
import os
import sys

from protos import units
from reference_agent.config import (DEFAULT_LISTEN, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SOURCE,
                                    DEFAULT_STATE_DIR, AgentConfig, ConfigError, parse_listen)

EPILOG = """\
examples:
  reference-agent serve                                  # 127.0.0.1:50051, ./agent-source, ./agent-state
  reference-agent serve --listen 127.0.0.1:0 --slots 2   # any free port; the first stdout line names it
  reference-agent serve --source memory://bucket --python /opt/py39/bin/python3.9
  reference-agent serve --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem
  reference-agent jobs --state-dir agent-state           # table of jobs with state, exit status, duration
  reference-agent job 3f2b...-...  --state-dir agent-state  # one job: details and its stdout/stderr
  reference-agent gc --state-dir agent-state --max-age 30d --dry-run  # what retention would remove

Files are taken from the source: the content of file U is the object named U (lower case).
The first stdout line of `serve` is exactly "listening on HOST:PORT". SIGTERM/SIGINT stop it
cleanly; running jobs keep running and are adopted by the next start (or --stop-jobs-on-exit).
"""


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0..65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _listen(text: str) -> str:
    try:
        parse_listen(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return text


_size = units.argparse_type(units.byte_count, minimum=1, finite=True, whole=True, unit="byte")
_duration = units.argparse_type(units.duration, exclusive_minimum=0, finite=True, what="duration")


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not name.replace("_", "a").isalnum():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _core_class(text: str):
    import pkgutil

    from reference_agent.domain import AgentCore

    module_name, sep, class_name = text.partition(":")
    if not sep or not module_name or not class_name:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODULE:CLASS")
    try:
        cls = pkgutil.resolve_name(text)
    except (ImportError, AttributeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, AgentCore)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a subclass of reference_agent.domain.AgentCore")
    return cls


def _add_operator_commands(sub) -> None:
    """`jobs`, `job` and `gc`: the operator's view of a state directory."""
    for name, helptext in (("jobs", "table of the journal's jobs"), ("job", "one job in detail")):
        p = sub.add_parser(name, help=helptext, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "job":
            p.add_argument("uuid", help="the job's UUID (any case)")
            p.add_argument("--tail", type=int, default=65536, metavar="BYTES",
                           help="show at most this many last bytes of stdout and stderr (0: none)")
        p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="the agent's state directory")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    gc = sub.add_parser("gc", help="apply a retention policy once (also while the agent runs)", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Remove DONE jobs' directories and cache entries by age and total size. "
                                    "Journal rows stay. While an agent runs on the directory, only DONE jobs' "
                                    "directories are removed (the cache is the agent's: see serve --retain-*).")
    gc.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="the agent's state directory")
    gc.add_argument("--max-age", type=_duration, metavar="DURATION", help="remove what is older (e.g. 30d)")
    gc.add_argument("--max-bytes", type=_size, metavar="SIZE", help="keep jobs/ and cache/ under SIZE")
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    gc.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reference-agent", description=__doc__.strip("`"),
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{serve,jobs,job,gc}")
    serve = sub.add_parser("serve", help="run the agent", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--listen", type=_listen, default=DEFAULT_LISTEN,
                       help=f"HOST:PORT to serve on; port 0 picks a free one (default {DEFAULT_LISTEN})")
    serve.add_argument("--source", default=DEFAULT_SOURCE,
                       help=f"file source: a directory or an fsspec URL (default ./{DEFAULT_SOURCE})")
    serve.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                       help=f"journal, content cache and job directories (default ./{DEFAULT_STATE_DIR})")
    serve.add_argument("--slots", type=positive_int, default=os.cpu_count() or 1,
                       help="jobs running at once (default: CPU count)")
    serve.add_argument("--python", action="append", default=[], metavar="PATH",
                       help="an extra interpreter (repeatable); preferred on equal versions")
    serve.add_argument("--no-path-pythons", action="store_true",
                       help="do not look for python3 and python3.X on PATH")
    serve.add_argument("--job-timeout", type=_seconds, metavar="S", help="wall-clock limit per job")
    serve.add_argument("--limit-address-space", type=_size, default=8 * 1024 ** 3, metavar="SIZE",
                       help="RLIMIT_AS per job (default 8GiB)")
    serve.add_argument("--limit-open-files", type=positive_int, default=1024, metavar="N")
    serve.add_argument("--limit-processes", type=positive_int, default=4096, metavar="N",
                       help="processes of one job (its cgroup, or its session without cgroups; counted "
                            "by the agent, root too; also pids.max and RLIMIT_NPROC); past it the job is "
                            "killed (default 4096)")
    serve.add_argument("--limit-memory", type=_size, metavar="SIZE",
                       help="memory of one job, all its processes together (its cgroup's memory limit; "
                            "needs cgroups, see --no-cgroups)")
    serve.add_argument("--no-cgroups", action="store_true",
                       help="contain jobs by session only. By default each job runs in its own cgroup "
                            "where the machine allows it (cgroup v2 with cgroup.kill, v1 pids and memory "
                            "under the agent's own cgroup), so a job that calls setsid is still counted "
                            "and killed; `serve` says on stderr which containment is in use")
    serve.add_argument("--job-env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
                       help="an environment variable for jobs (their environment is otherwise clean)")
    serve.add_argument("--stop-jobs-on-exit", action="store_true",
                       help="on SIGTERM, end running jobs (DONE, interrupted) instead of adopting them later")
    serve.add_argument("--accept-lost-journal", action="store_true",
                       help="start although the journal is missing or empty while jobs/ or cache/ hold "
                            "entries: they are moved to STATE/lost-TIMESTAMP/ and forgotten (without it "
                            "the agent refuses to start, exit status 2)")
    serve.add_argument("--job-user", metavar="NAME",
                       help="run jobs as this user (the agent runs as root): a job can then neither read "
                            "nor write the agent's files, other jobs' directories or its own inputs; "
                            "only its work directory is its own")
    serve.add_argument("--retain-age", type=_duration, metavar="DURATION",
                       help="remove DONE jobs' directories (inputs, outputs) and cache entries older than "
                            "this (e.g. 30d), in the background; their journal rows stay, so their ids never "
                            "run again (default: keep everything)")
    serve.add_argument("--retain-bytes", type=_size, metavar="SIZE",
                       help="keep jobs/ and cache/ under SIZE: oldest DONE jobs' directories first, then the "
                            "oldest cache entries; never those of waiting, running or unsubmitted jobs")
    serve.add_argument("--gc-interval", type=_duration, default=600.0, metavar="DURATION",
                       help="how often the retention policy is applied (default 10m)")
    serve.add_argument("--tls-cert", metavar="FILE")
    serve.add_argument("--tls-key", metavar="FILE")
    serve.add_argument("--tls-client-ca", metavar="FILE", help="require client certificates signed by it")
    serve.add_argument("--auth-tokens", metavar="FILE",
                       help="require metadata 'authorization: Bearer TOKEN' with a token from FILE "
                            "(one per line, '#' comments); others get UNAUTHENTICATED; health stays open")
    serve.add_argument("--metrics-port", type=_port, metavar="P", help="serve Prometheus metrics on 127.0.0.1:P")
    serve.add_argument("--max-request-bytes", type=_size, default=DEFAULT_MAX_REQUEST_BYTES, metavar="SIZE",
                       help="larger requests get RESOURCE_EXHAUSTED (default 4MiB)")
    serve.add_argument("--quiet", action="store_true", help="no JSON log lines on stderr")
    _add_server_options(serve)
    serve.add_argument("--core", metavar="MODULE:CLASS", type=_core_class,
                       help="serve a subclass of reference_agent.domain.AgentCore (e.g. a broken agent)")
    _add_operator_commands(sub)
    return parser


# (flag, AgentConfig field, type, help): the server's defences (docs/AGENT.md "Serving")
_SERVER_OPTIONS = (
    ("--work-threads", "work_threads", positive_int, "threads for the domain's blocking work (journal, copies, "
     "process starts); default: CPUs + 4, from 8 to 32"),
    ("--max-queued-calls", "max_queued_calls", int, "calls waiting for a work thread; more get RESOURCE_EXHAUSTED "
     "(default 256)"),
    ("--request-timeout", "request_timeout", _duration, "time for a call's request message to come after its "
     "headers; a call past it is ended with DEADLINE_EXCEEDED (default 10s)"),
    ("--max-connections", "max_connections", positive_int, "connections at once (default 4096, lowered to leave "
     "file descriptors for jobs; RLIMIT_NOFILE is raised to its hard limit at start)"),
    ("--max-streams-per-connection", "max_streams_per_connection", positive_int, "concurrent calls on one "
     "connection (HTTP/2 max_concurrent_streams, default 100)"),
    ("--max-calls", "max_calls", positive_int, "concurrent calls in all; more get RESOURCE_EXHAUSTED (default 4096)"),
    ("--max-open-streams", "max_open_streams", positive_int, "open streaming calls of one method (health Watch, "
     "reflection); more get RESOURCE_EXHAUSTED (default 128)"),
    ("--keepalive-time", "keepalive_time", _duration, "ping a connection with calls after this long without "
     "traffic (default 60s)"),
    ("--keepalive-timeout", "keepalive_timeout", _duration, "close it when the ping is not answered (default 20s)"),
    ("--min-client-ping-interval", "min_client_ping_interval", _duration, "client pings closer than this are "
     "strikes; two strikes close the connection (default 10s)"),
    ("--max-connection-idle", "max_connection_idle", _duration, "close connections without calls after this "
     "long (default 5min)"),
    ("--max-connection-age", "max_connection_age", _duration, "ask clients to reconnect after this long "
     "(default 1h); open streams end UNAVAILABLE after --max-connection-age-grace more (default 5min)"),
    ("--max-connection-age-grace", "max_connection_age_grace", _duration, argparse.SUPPRESS),
)


def _add_server_options(serve: argparse.ArgumentParser) -> None:
    for flag, _field, kind, helptext in _SERVER_OPTIONS:
        serve.add_argument(flag, type=kind, metavar="N" if kind in (int, positive_int) else "DURATION",
                           help=helptext)


def _server_settings(args: argparse.Namespace) -> dict:
    """The AgentConfig fields of the server options given on the command line (others: defaults)."""
    return {name: getattr(args, name) for _flag, name, _kind, _help in _SERVER_OPTIONS
            if getattr(args, name) is not None}


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    return AgentConfig(
        listen=args.listen, source=args.source, state_dir=args.state_dir, slots=args.slots,
        pythons=tuple(args.python), discover_path=not args.no_path_pythons, job_timeout=args.job_timeout,
        limit_address_space=args.limit_address_space, limit_open_files=args.limit_open_files,
        limit_processes=args.limit_processes, job_env=dict(args.job_env),
        limit_memory=args.limit_memory, use_cgroups=not args.no_cgroups, job_user=args.job_user,
        retain_age=args.retain_age, retain_bytes=args.retain_bytes, gc_interval=args.gc_interval,
        stop_jobs_on_exit=args.stop_jobs_on_exit, accept_lost_journal=args.accept_lost_journal,
        tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca, auth_tokens=args.auth_tokens, metrics_port=args.metrics_port,
        max_request_bytes=args.max_request_bytes, log_rpcs=not args.quiet, **_server_settings(args),
    ).validate()


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from reference_agent.domain import AgentCore
    from reference_agent.server import AgentServer, serve_until_signalled
    from reference_agent.telemetry import Telemetry

    os.umask(0o077)  # everything the agent creates is private to its user (issue 11)
    try:
        config = config_from_args(args)
        server = AgentServer(config, core_factory=args.core or AgentCore,
                             telemetry=Telemetry(None if args.quiet else sys.stderr))
        return serve_until_signalled(server, "reference-agent")
    except ConfigError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "serve":
        return serve(args, parser)
    if args.command == "gc":
        from reference_agent import gc_command

        return gc_command.main(args, parser)
    from reference_agent import operator_view

    return operator_view.main(args, parser)


if __name__ == "__main__":
    sys.exit(main())
