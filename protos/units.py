"""The toolkit's one units language: durations, byte sizes and bandwidths.

Every command (`reference-agent`, `agent-conformance`, `agent-sim`), config file and scenario
reads values through this module, with one reading (docs/SPEC.md, "Units"):

- a bare number is seconds, bytes or bytes per second;
- durations: ``us``, ``ms``, ``s`` (``sec``), ``min``, ``h``, ``d``; ``m`` alone is refused
  (minutes are ``min``, milliseconds ``ms``), so "15m" can never mean two things;
- sizes: SI prefixes are powers of ten (``kB`` = 1,000, ``MB`` = 10**6, ``GB``, ``TB``, ``PB``),
  IEC prefixes powers of two (``KiB`` = 1,024, ``MiB`` = 2**20, ...); ``bit`` counts eighths of
  a byte; a prefix with no ``B`` or ``bit`` ("10M") and ``KB`` are refused, naming both readings;
- bandwidths: a size per second (``125MB/s``, ``1Gbit/s``, ``1Gbps``) or ``inf``.

Errors are `UnitError` (a ValueError) whose text names the value and the spelling to use.
`argparse_type(parse, ...)` adapts a parser for argparse with bounds.
"""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable

__all__ = ["UnitError", "duration", "size", "byte_count", "bandwidth", "argparse_type",
           "DURATION_UNITS", "SI_PREFIXES", "IEC_PREFIXES"]

_NUM = r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
_SPLIT = re.compile(_NUM + r"\s*([A-Za-zµ/]*)")

DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "us": 1e-6, "µs": 1e-6, "ms": 1e-3,
                  "min": 60.0, "h": 3600.0, "d": 86400.0}
SI_PREFIXES = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
IEC_PREFIXES = {"Ki": 2.0 ** 10, "Mi": 2.0 ** 20, "Gi": 2.0 ** 30, "Ti": 2.0 ** 40, "Pi": 2.0 ** 50}
_BASES = {"B": 1.0, "bit": 0.125}
_INFINITE = ("inf", "infinite", "unlimited")


class UnitError(ValueError):
    """A value that is neither a number nor a number with a unit of the expected kind."""


def _plain_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _split(value: object, kind: str, example: str) -> tuple[float, str]:
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not {kind}: expected a number or a string like {example}")
    text = value.strip()
    m = _SPLIT.fullmatch(text)
    if not m:
        raise UnitError(f"{value!r} is not {kind}: expected a number or a string like {example}")
    return float(m.group(1)), m.group(2)


def _infinite(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() in _INFINITE


def duration(value: object, *, allow_inf: bool = True) -> float:
    """Seconds from 30, 2.5, "30s", "250ms", "5min", "2h", "1d" (and "inf" when allowed)."""
    num = _plain_number(value)
    if num is not None:
        return num
    if allow_inf and _infinite(value):
        return math.inf
    number, unit = _split(value, "a duration", "'30s', '250ms', '5min', '2h', '1d'")
    if unit in DURATION_UNITS:
        return number * DURATION_UNITS[unit]
    if unit in ("m", "M"):
        raise UnitError(f"{value!r}: 'm' is not a unit of time here; write "
                        f"'{_fmt(number)}min' for minutes or '{_fmt(number)}ms' for milliseconds")
    if unit in ("mins", "minute", "minutes", "hr", "hrs", "hour", "hours", "secs", "second", "seconds",
                "day", "days", "S", "H", "D", "MS", "Min"):
        canon = {"mins": "min", "minute": "min", "minutes": "min", "Min": "min", "hr": "h", "hrs": "h",
                 "hour": "h", "hours": "h", "H": "h", "secs": "s", "second": "s", "seconds": "s", "S": "s",
                 "day": "d", "days": "d", "D": "d", "MS": "ms"}[unit]
        raise UnitError(f"{value!r}: write '{_fmt(number)}{canon}' (durations take us, ms, s, min, h, d)")
    raise UnitError(f"{value!r} is not a duration: unknown unit {unit!r} (durations take us, ms, s, min, h, d)")


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(number)


def _bytes_of(number: float, unit: str, value: object, kind: str) -> float:
    """Bytes from a number and a unit such as "MB", "MiB", "Gbit", "" (bytes)."""
    if unit == "":
        return number
    for base in ("bit", "B"):
        if unit.endswith(base):
            prefix = unit[: -len(base)]
            if prefix in SI_PREFIXES:
                return number * SI_PREFIXES[prefix] * _BASES[base]
            if prefix in IEC_PREFIXES:
                return number * IEC_PREFIXES[prefix] * _BASES[base]
            if prefix == "K":
                raise UnitError(f"{value!r}: 'K{base}' is ambiguous; write '{_fmt(number)}k{base}' "
                                f"(1,000) or '{_fmt(number)}Ki{base}' (1,024)")
            if prefix.lower() in ("ki", "mi", "gi", "ti", "pi"):
                raise UnitError(f"{value!r}: write '{_fmt(number)}{prefix[0].upper()}i{base}' (IEC prefixes "
                                "are Ki, Mi, Gi, Ti, Pi)")
            if prefix.lower() in SI_PREFIXES or prefix.upper() in SI_PREFIXES:
                good = "k" if prefix.lower() == "k" else prefix.upper()
                raise UnitError(f"{value!r}: write '{_fmt(number)}{good}{base}' (SI prefixes are k, M, G, T, P)")
            break
    if unit in ("b", "kb", "mb", "gb", "tb", "Mb", "Gb", "Tb", "Kb", "kb"):
        p = unit[:-1]
        good = "k" if p.lower() == "k" else p.upper()
        raise UnitError(f"{value!r}: 'b' is ambiguous; write '{_fmt(number)}{good}B' for bytes or "
                        f"'{_fmt(number)}{good}bit' for bits")
    if unit in ("k", "K", "m", "M", "g", "G", "t", "T", "p", "P", "Ki", "Mi", "Gi", "Ti", "Pi",
                "ki", "mi", "gi", "ti", "pi"):
        letter = unit[0].upper()
        si, iec = ("k" if letter == "K" else letter), letter + "i"
        raise UnitError(f"{value!r} has a prefix and no unit; write '{_fmt(number)}{si}B' "
                        f"({SI_PREFIXES[si]:,.0f} bytes each) or '{_fmt(number)}{iec}B' "
                        f"({IEC_PREFIXES[iec]:,.0f} bytes each)")
    raise UnitError(f"{value!r} is not {kind}: unknown unit {unit!r} (use B or bit with an SI prefix k, M, G, T, P "
                    "or an IEC prefix Ki, Mi, Gi, Ti, Pi)")


def size(value: object) -> float:
    """Bytes from 1000, "10MB" (10**7), "1.5GiB" (1.5 * 2**30), "800Mbit" (10**8)."""
    num = _plain_number(value)
    if num is not None:
        return num
    number, unit = _split(value, "a size", "'10MB', '1.5GiB', '800Mbit'")
    return _bytes_of(number, unit, value, "a size")


def byte_count(value: object) -> int:
    """A whole number of bytes (a limit, a message size): size() that refuses fractions."""
    b = size(value)
    if not math.isfinite(b) or b != int(b):
        raise UnitError(f"{value!r} is not a whole number of bytes ({b!r})")
    return int(b)


def bandwidth(value: object) -> float:
    """Bytes per second from 1.25e8, "125MB/s", "1Gbit/s", "1Gbps", or "inf"."""
    num = _plain_number(value)
    if num is not None:
        return num
    if _infinite(value):
        return math.inf
    number, unit = _split(value, "a bandwidth", "'125MB/s', '1Gbit/s', 'inf'")
    if unit.endswith("bps") and unit != "bps" or unit == "bps":
        unit = unit[:-3] + "bit/s"
    if unit == "":
        return number   # a bare number is bytes per second
    if not unit.endswith("/s"):
        raise UnitError(f"{value!r} is not a bandwidth: write '{value.strip()}/s'")
    try:
        return _bytes_of(number, unit[:-2], value, "a bandwidth")
    except UnitError as exc:   # the suggested spellings are rates too
        raise UnitError(re.sub(r"'([-+0-9.eE]+[A-Za-z]*(?:B|bit))'", r"'\1/s'", str(exc))) from None


def argparse_type(parse: Callable[[object], float], *, minimum: float | None = None,
                  exclusive_minimum: float | None = None, finite: bool = False,
                  whole: bool = False, what: str = "", unit: str = "") -> Callable[[str], float]:
    """An argparse `type=` from a parser here, with bounds; errors name the value and the bound.

    `what` names the kind in messages ("duration"), `unit` follows the bound ("byte"):
    "'0' must be a finite duration > 0", "'-5' must be >= 1 byte".
    """

    def refuse(text: str, bound: str):
        kind = f"a finite {what} " if finite and what else (f"a {what} " if what else "")
        raise argparse.ArgumentTypeError(f"{text!r} must be {kind}{bound}{' ' + unit if unit else ''}")

    def convert(text: str):
        try:
            value = parse(text)
        except UnitError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if exclusive_minimum is not None and not value > exclusive_minimum:
            refuse(text, f"> {_fmt(exclusive_minimum)}")
        if minimum is not None and not value >= minimum:
            refuse(text, f">= {_fmt(minimum)}")
        if finite and not math.isfinite(value):
            refuse(text, f"> {_fmt(exclusive_minimum)}" if exclusive_minimum is not None
                   else (f">= {_fmt(minimum)}" if minimum is not None else "(not inf)"))
        if whole:
            if value != int(value):
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
            return int(value)
        return value

    convert.__name__ = what or getattr(parse, "__name__", "value")
    return convert
