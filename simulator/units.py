"""Parsing of durations, byte sizes and bandwidths written as numbers or with units."""
from __future__ import annotations

import math
import re

_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_DURATION_RE = re.compile(_NUM + r"\s*(ms|s|sec|min|h|d)?", re.ASCII)
_SIZE_RE = re.compile(_NUM + r"\s*([kKMGTP]i?)?(B|bit)?", re.ASCII)
_RATE_RE = re.compile(_NUM + r"\s*([kKMGTP]i?)?(B|bit)/s", re.ASCII)

_DURATION_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PREFIX = {None: 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "ki": 2.0**10, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}


class UnitError(ValueError):
    """A value that is neither a number nor a number with a known unit."""


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _infinite(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("inf", "infinite", "unlimited")


def _bytes(m: re.Match) -> float:
    """Bytes from a size or rate match: (number, prefix, "B" or "bit")."""
    factor = 0.125 if m.group(3) == "bit" else 1.0
    return float(m.group(1)) * _PREFIX[m.group(2)] * factor


def duration(value: object) -> float:
    """Seconds from 30, 2.5, "30s", "250ms", "5min", "2h", "1d"."""
    num = _number(value)
    if num is not None:
        return num
    if _infinite(value):
        return math.inf
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value.strip())
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise UnitError("expected seconds as a number or a string like '30s', '250ms', '5min', '2h'")


def size(value: object) -> float:
    """Bytes from 1000, "10MB", "1.5GiB", "800Mbit"."""
    num = _number(value)
    if num is not None:
        return num
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value.strip())
        if m:
            return _bytes(m)
    raise UnitError("expected bytes as a number or a string like '10MB', '1.5GiB'")


def bandwidth(value: object) -> float:
    """Bytes per second from 1.25e8, "125MB/s", "1Gbit/s", or "inf"."""
    num = _number(value)
    if num is not None:
        return num
    if _infinite(value):
        return math.inf
    if isinstance(value, str):
        m = _RATE_RE.fullmatch(value.strip())
        if m:
            return _bytes(m)
    raise UnitError("expected bytes/s as a number or a string like '125MB/s', '1Gbit/s', 'inf'")
