"""Validation of the suite's options, shared by the pytest plugin and the CLI (errors name the value)."""
from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from conformance import launcher
from protos import validation

_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})$")


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
    python_version: str = "3"
    level: str = "must"
    time_scale: float = 1.0
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    report_json: str | None = None
    expected: str | None = None
    update_expected: bool = False
    profile: str = "ci"
    max_request_bytes: int | None = None

    @property
    def owned(self) -> bool:
        """True when the suite starts the agent itself (embedded reference agent or --agent-cmd)."""
        return self.target is None


def check_target(value: str) -> str:
    match = _HOSTPORT.match(value or "")
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise OptionError(f"--target {value!r}: expected HOST:PORT with a port in 1..65535, "
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


def validate(raw: dict, source_from_hook: bool = False) -> Settings:
    """Check raw option values (strings or None, keyed by Settings field names)."""
    s = Settings()
    if raw.get("target") and raw.get("agent_cmd"):
        raise OptionError("give either --target (an agent that is already running) or --agent-cmd, not both")
    if raw.get("target"):
        s.target = check_target(raw["target"])
    if raw.get("agent_cmd"):
        try:
            launcher.check_command(raw["agent_cmd"])
        except ValueError as exc:
            raise OptionError(str(exc)) from None
        s.agent_cmd = raw["agent_cmd"]
    if raw.get("source_dir"):
        s.source_dir = _dir("--source-dir", raw["source_dir"])
    if raw.get("put_cmd"):
        s.put_cmd = _command("--put-cmd", raw["put_cmd"], ("path", "uuid"))
        if "{path}" not in s.put_cmd:
            raise OptionError(f"--put-cmd {s.put_cmd!r} has no {{path}} placeholder (the file to put)")
    if s.target and not (s.source_dir or s.put_cmd or source_from_hook):
        raise OptionError("--target needs --source-dir or --put-cmd: the suite must put test inputs into the "
                          "agent's file source")
    if raw.get("witness_dir"):
        s.witness_dir = _dir("--witness-dir", raw["witness_dir"])
    if raw.get("slots") not in (None, ""):
        text = str(raw["slots"])
        if not text.isdigit() or not 1 <= int(text) <= 1024:
            raise OptionError(f"--slots {text!r}: expected a whole number from 1 to 1024")
        s.slots = int(text)
    if raw.get("restart_cmd"):
        s.restart_cmd = _command("--restart-cmd", raw["restart_cmd"], ())
    if raw.get("python_version") not in (None,):
        try:
            validation.parse_python_version(raw["python_version"])
        except Exception as exc:
            raise OptionError(f"--python-version {raw['python_version']!r}: {exc}") from None
        s.python_version = raw["python_version"]
    level = str(raw.get("level") or "must").lower()
    if level not in ("must", "should"):
        raise OptionError(f"--level {raw.get('level')!r}: expected must or should")
    s.level = level
    text = str(raw.get("time_scale") if raw.get("time_scale") is not None else "1")
    try:
        scale = float(text)
    except ValueError:
        scale = float("nan")
    if not math.isfinite(scale) or not 0.1 <= scale <= 100:
        raise OptionError(f"--time-scale {text!r}: expected a number from 0.1 to 100")
    s.time_scale = scale
    for name in ("tls_ca", "tls_cert", "tls_key"):
        if raw.get(name):
            setattr(s, name, _file("--" + name.replace("_", "-"), raw[name]))
    if (s.tls_cert is None) != (s.tls_key is None):
        raise OptionError("--tls-cert and --tls-key go together (mutual TLS needs both)")
    if s.tls_cert and not s.tls_ca:
        raise OptionError("--tls-cert/--tls-key need --tls-ca (the CA that signed the agent's certificate)")
    if (s.tls_ca) and not s.target:
        raise OptionError("--tls-ca applies to --target only (the suite starts its own agents without TLS)")
    for name in ("report_json",):
        if raw.get(name):
            parent = Path(raw[name]).resolve().parent
            if not parent.is_dir():
                raise OptionError(f"--report-json {raw[name]!r}: folder {str(parent)!r} does not exist")
            s.report_json = raw[name]
    if raw.get("expected"):
        path = Path(raw["expected"])
        if not path.is_file() and not raw.get("update_expected"):
            raise OptionError(f"--expected-failures {raw['expected']!r}: no such file "
                              f"(add --update-expected to create it)")
        s.expected = str(path)
    s.update_expected = bool(raw.get("update_expected"))
    if s.update_expected and not s.expected:
        raise OptionError("--update-expected needs --expected-failures FILE (the file to rewrite)")
    if raw.get("max_request_bytes") not in (None, ""):
        text = str(raw["max_request_bytes"])
        if not text.isdigit() or not 1024 <= int(text) <= 64 * 1024 * 1024:
            raise OptionError(f"--max-request-bytes {text!r}: expected a whole number of bytes from 1024 to 67108864")
        s.max_request_bytes = int(text)
    profile = raw.get("profile") or "ci"
    if profile not in ("ci", "deep"):
        raise OptionError(f"--hypothesis-profile {profile!r}: expected ci or deep")
    s.profile = profile
    if s.witness_dir and not os.access(s.witness_dir, os.W_OK):
        raise OptionError(f"--witness-dir {s.witness_dir!r}: not writable")
    return s
