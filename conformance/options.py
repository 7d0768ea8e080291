"""The suite's options: one table drives the pytest flags, the CLI flags and the validation (errors name the value)."""
from __future__ import annotations

import fnmatch
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from protos import units, validation
from protos.requirements import ALL_REQUIREMENTS, REQUIREMENTS, Level

_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})$")
CLI, PYTEST = "cli", "pytest"


@dataclass(frozen=True)
class Option:
    """One option: its Settings field, its CLI flag (the pytest flag is the same with an --agent- prefix)."""

    field: str
    cli: str
    metavar: str | None
    help: str
    flag: bool = False                 # store_true
    default: str | None = None

    @property
    def pytest(self) -> str:
        return self.cli if self.cli.startswith("--agent-") else "--agent-" + self.cli[2:]

    @property
    def dest(self) -> str:
        return self.pytest.lstrip("-").replace("-", "_")

    def name(self, front: str) -> str:
        return self.pytest if front == PYTEST else self.cli


OPTIONS = (
    Option("target", "--target", "HOST:PORT", "test the agent that is already running at this address"),
    Option("agent_cmd", "--agent-cmd", "CMD",
           "start (and restart, SIGKILL) the agent with CMD: split into words as a shell would, run without "
           "a shell; placeholders {listen} {source} {state_dir} {slots}; it must print 'listening on HOST:PORT'"),
    Option("source_dir", "--source-dir", "DIR", "folder that the agent reads as its file source"),
    Option("put_cmd", "--put-cmd", "CMD", "shell command that puts the file {path} into the source as {uuid}"),
    Option("witness_dir", "--witness-dir", "DIR",
           "folder that the agent's jobs can write at the same path (enables the execution checks)"),
    Option("slots", "--slots", "N", "the agent's slot count (enables the scheduling checks)"),
    Option("restart_cmd", "--restart-cmd", "CMD",
           "shell command that restarts the agent cleanly and returns (enables the clean half of AGT-DUR-1)"),
    Option("kill_cmd", "--kill-cmd", "CMD",
           "shell command that SIGKILLs the agent (then --restart-cmd starts it): enables the SIGKILL half of "
           "AGT-DUR-1 for a --target"),
    Option("python_version", "--python-version", "SPEC", "a python_version the agent can satisfy (default 3)"),
    Option("level", "--level", "must|should", "requirements that must pass (default must)", default="must"),
    Option("only", "--only", "IDS", "check only these requirement IDs (comma-separated, globs: AGT-RUN-*,AGT-STATE-2)"),
    Option("skip", "--skip", "IDS", "do not check these requirement IDs (comma-separated, globs)"),
    Option("time_scale", "--time-scale", "X", "multiply every deadline and interval (default 1)", default="1"),
    Option("tls_ca", "--tls-ca", "FILE", "connect with TLS, trusting this CA (PEM)"),
    Option("tls_cert", "--tls-cert", "FILE", "client certificate for mutual TLS (PEM)"),
    Option("tls_key", "--tls-key", "FILE", "client key for mutual TLS (PEM)"),
    Option("report_json", "--report-json", "FILE", "write the JSON report (per requirement, timelines)"),
    Option("report_md", "--report-md", "FILE",
           "write a Markdown summary (for a pull-request comment or $GITHUB_STEP_SUMMARY)"),
    Option("expected", "--expected-failures", "FILE", "known failures, lines 'ID  # message prefix'"),
    Option("update_expected", "--update-expected", None, "rewrite --expected-failures from this run", flag=True),
    Option("ext_profile", "--profile", "auto|v1|ext",
           "the extension profile (PROTOCOL-EXT): auto (default) checks it when the agent lists it in "
           "GetCapabilities, v1 never, ext requires it (not offered is then a failure)", default="auto"),
    Option("profile", "--hypothesis-profile", "ci|deep",
           "depth of the stateful test (ci: derandomized, short; deep: random, longer)", default="ci"),
    Option("max_request_bytes", "--max-request-bytes", "SIZE",
           "the agent's request size limit (bytes, or 4MiB, 4MB): a larger request must get RESOURCE_EXHAUSTED"),
)
BY_FIELD = {o.field: o for o in OPTIONS}


class OptionError(ValueError):
    """A bad option value; the message names the option and the value."""


@dataclass
class Settings:
    target: str | None = None
    agent_cmd: str | None = None
    source_dir: str | None = None
    put_cmd: str | None = None
    witness_dir: str | None = None
    slots: int | None = None
    restart_cmd: str | None = None
    kill_cmd: str | None = None
    python_version: str = "3"
    level: str = "must"
    only: str | None = None
    skip: str | None = None
    time_scale: float = 1.0
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    report_json: str | None = None
    report_md: str | None = None
    expected: str | None = None
    update_expected: bool = False
    profile: str = "ci"
    max_request_bytes: int | None = None
    selected: frozenset = field(default_factory=lambda: frozenset(ALL_REQUIREMENTS))
    ext_profile: str = "auto"

    @property
    def owned(self) -> bool:
        """True when the suite starts the agent itself (embedded reference agent or --agent-cmd)."""
        return self.target is None


def check_target(value: str, name: str = "--target") -> str:
    match = _HOSTPORT.match(value or "")
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise OptionError(f"{name} {value!r}: expected HOST:PORT with a port in 1..65535, "
                          f"for example 127.0.0.1:50051 or [::1]:50051")
    return value


def _dir(option: str, value: str) -> str:
    if not Path(value).is_dir():
        raise OptionError(f"{option} {value!r}: not an existing directory")
    return str(Path(value).resolve())


def _file(option: str, value: str) -> str:
    if not Path(value).is_file():
        raise OptionError(f"{option} {value!r}: no such file")
    return value


def _command(option: str, value: str, placeholders: tuple[str, ...]) -> str:
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise OptionError(f"{option} {value!r}: {exc}") from None
    if not words:
        raise OptionError(f"{option} is empty")
    try:
        value.format(**{p: "x" for p in placeholders})
    except (KeyError, IndexError, ValueError) as exc:
        known = ", ".join("{" + p + "}" for p in placeholders) or "none"
        raise OptionError(f"{option} {value!r}: bad placeholder {exc} (known: {known})") from None
    return value


def _patterns(option: str, text: str) -> set[str]:
    """The requirement IDs that comma-separated globs name; a glob naming none is an error."""
    out: set[str] = set()
    parts = [p.strip().upper() for p in str(text).split(",")]
    if not any(parts):
        raise OptionError(f"{option} {text!r}: expected requirement IDs or globs, e.g. AGT-RUN-*,AGT-STATE-2")
    for part in parts:
        if not part:
            continue
        hits = {rid for rid in ALL_REQUIREMENTS if fnmatch.fnmatchcase(rid, part)}
        if not hits:
            raise OptionError(f"{option} {part!r} matches no requirement ID of PROTOCOL-V1 or "
                              f"PROTOCOL-EXT (known: {', '.join(ALL_REQUIREMENTS)})")
        out |= hits
    return out


def select(only: str | None, skip: str | None, level: str, front: str = CLI) -> frozenset:
    """The requirement IDs to check; selecting nothing (at this level) is an OptionError."""
    o, s = BY_FIELD["only"].name(front), BY_FIELD["skip"].name(front)
    chosen = _patterns(o, only) if only else set(ALL_REQUIREMENTS)
    if skip:
        chosen -= _patterns(s, skip)
    if not chosen:
        raise OptionError(f"{o} {only!r} with {s} {skip!r} selects no requirement: nothing to check")
    if level == "must" and all(ALL_REQUIREMENTS[r].level is Level.SHOULD for r in chosen):
        raise OptionError(f"the selection ({', '.join(sorted(chosen))}) holds only SHOULD requirements, "
                          f"which --level must does not check: add {BY_FIELD['level'].name(front)} should")
    return frozenset(chosen)


def validate(raw: dict, source_from_hook: bool = False, front: str = CLI) -> Settings:
    """Check raw option values (strings or None, keyed by Settings field names). Error messages name
    the flag as the user typed it: `front` is CLI (--target) or PYTEST (--agent-target)."""
    n = {o.field: o.name(front) for o in OPTIONS}
    s = Settings()
    _agent_options(raw, n, s, source_from_hook)
    _run_options(raw, n, s, front)
    _output_options(raw, n, s)
    return s


def _agent_options(raw: dict, n: dict, s: Settings, source_from_hook: bool) -> None:
    """The agent under test: target or command, source, witness, slots, restart and kill commands."""
    if raw.get("target") and raw.get("agent_cmd"):
        raise OptionError(f"give either {n['target']} (an agent that is already running) or {n['agent_cmd']}, "
                          f"not both")
    if raw.get("target"):
        s.target = check_target(raw["target"], n["target"])
    if raw.get("agent_cmd"):
        from conformance import launcher  # here, not at import: every pytest run imports this module

        try:
            launcher.check_command(raw["agent_cmd"])
        except ValueError as exc:
            raise OptionError(str(exc).replace("--agent-cmd", n["agent_cmd"], 1)) from None
        s.agent_cmd = raw["agent_cmd"]
    if raw.get("source_dir"):
        s.source_dir = _dir(n["source_dir"], raw["source_dir"])
    if raw.get("put_cmd"):
        s.put_cmd = _command(n["put_cmd"], raw["put_cmd"], ("path", "uuid"))
        if "{path}" not in s.put_cmd:
            raise OptionError(f"{n['put_cmd']} {s.put_cmd!r} has no {{path}} placeholder (the file to put)")
    if s.target and not (s.source_dir or s.put_cmd or source_from_hook):
        raise OptionError(f"{n['target']} needs {n['source_dir']} or {n['put_cmd']}: the suite must put test "
                          f"inputs into the agent's file source")
    if raw.get("witness_dir"):
        s.witness_dir = _dir(n["witness_dir"], raw["witness_dir"])
    if raw.get("slots") not in (None, ""):
        text = str(raw["slots"])
        if not text.isdigit() or not 1 <= int(text) <= 1024:
            raise OptionError(f"{n['slots']} {text!r}: expected a whole number from 1 to 1024")
        s.slots = int(text)
    if raw.get("restart_cmd"):
        s.restart_cmd = _command(n["restart_cmd"], raw["restart_cmd"], ())
    if raw.get("kill_cmd"):
        s.kill_cmd = _command(n["kill_cmd"], raw["kill_cmd"], ())
        if not s.target:
            raise OptionError(f"{n['kill_cmd']} applies to {n['target']} only (the suite SIGKILLs the agents "
                              f"it starts itself)")
        if not s.restart_cmd:
            raise OptionError(f"{n['kill_cmd']} needs {n['restart_cmd']}: after the SIGKILL the suite must "
                              f"start the agent again")


def _run_options(raw: dict, n: dict, s: Settings, front: str) -> None:
    """What is checked and how: python_version, level, selection, time scale."""
    if raw.get("python_version") is not None:
        try:
            validation.parse_python_version(raw["python_version"])
        except Exception as exc:
            raise OptionError(f"{n['python_version']} {raw['python_version']!r}: {exc}") from None
        s.python_version = raw["python_version"]
    level = str(raw.get("level") or "must").lower()
    if level not in ("must", "should"):
        raise OptionError(f"{n['level']} {raw.get('level')!r}: expected must or should")
    s.level = level
    s.only, s.skip = raw.get("only") or None, raw.get("skip") or None
    s.selected = select(s.only, s.skip, level, front)
    text = str(raw.get("time_scale") if raw.get("time_scale") is not None else "1")
    try:
        scale = float(text)
    except ValueError:
        scale = float("nan")
    if not math.isfinite(scale) or not 0.1 <= scale <= 100:
        raise OptionError(f"{n['time_scale']} {text!r}: expected a number from 0.1 to 100")
    s.time_scale = scale


def _output_options(raw: dict, n: dict, s: Settings) -> None:
    """TLS, reports, expected failures, request limit, profiles; the witness folder writable."""
    for name in ("tls_ca", "tls_cert", "tls_key"):
        if raw.get(name):
            setattr(s, name, _file(n[name], raw[name]))
    if (s.tls_cert is None) != (s.tls_key is None):
        raise OptionError(f"{n['tls_cert']} and {n['tls_key']} go together (mutual TLS needs both)")
    if s.tls_cert and not s.tls_ca:
        raise OptionError(f"{n['tls_cert']}/{n['tls_key']} need {n['tls_ca']} (the CA that signed the agent's "
                          f"certificate)")
    if s.tls_ca and not s.target:
        raise OptionError(f"{n['tls_ca']} applies to {n['target']} only (the suite starts its own agents "
                          f"without TLS)")
    for name in ("report_json", "report_md"):
        if raw.get(name):
            parent = Path(raw[name]).resolve().parent
            if not parent.is_dir():
                raise OptionError(f"{n[name]} {raw[name]!r}: folder {str(parent)!r} does not exist")
            setattr(s, name, raw[name])
    if raw.get("expected"):
        path = Path(raw["expected"])
        if not path.is_file() and not raw.get("update_expected"):
            raise OptionError(f"{n['expected']} {raw['expected']!r}: no such file "
                              f"(add {n['update_expected']} to create it)")
        s.expected = str(path)
    s.update_expected = bool(raw.get("update_expected"))
    if s.update_expected and not s.expected:
        raise OptionError(f"{n['update_expected']} needs {n['expected']} FILE (the file to rewrite)")
    if raw.get("max_request_bytes") not in (None, ""):
        text = str(raw["max_request_bytes"])
        try:
            limit = units.byte_count(text)
        except units.UnitError as exc:
            raise OptionError(f"{n['max_request_bytes']} {exc}") from None
        if not 1024 <= limit <= 64 * 1024 * 1024:
            raise OptionError(f"{n['max_request_bytes']} {text!r}: expected a size from 1KiB (1024) "
                              f"to 64MiB (67108864), like 4MiB")
        s.max_request_bytes = limit
    ext = str(raw.get("ext_profile") or "auto").lower()
    if ext not in ("auto", "v1", "ext"):
        raise OptionError(f"{n['ext_profile']} {raw.get('ext_profile')!r}: expected auto, v1 or ext")
    s.ext_profile = ext
    profile = raw.get("profile") or "ci"
    if profile not in ("ci", "deep"):
        raise OptionError(f"{n['profile']} {profile!r}: expected ci or deep")
    s.profile = profile
    if s.witness_dir and not os.access(s.witness_dir, os.W_OK):
        raise OptionError(f"{n['witness_dir']} {s.witness_dir!r}: not writable")
