"""Key-by-key reading of a scenario table, with errors that name the key and the bad value."""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable

from protos import units
from simulator import distributions


class ScenarioError(ValueError):
    """A scenario that does not validate. `key` is the dotted key, `value` what was found there."""

    def __init__(self, key: str, value: object, message: str):
        self.key = key
        self.value = value
        self.message = message
        shown = "(missing)" if value is _MISSING else _short(value)
        super().__init__(f"scenario key {key} = {shown}: {message}")


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING = MISSING = _Missing()    # a required key's default: its absence is an error


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Table:
    """A TOML table read under a dotted prefix: every read names its key, unread keys are errors."""

    def __init__(self, data: object, prefix: str):
        if not isinstance(data, dict):
            raise ScenarioError(prefix, data, "must be a table")
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: object = _MISSING) -> object:
        self.used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise ScenarioError(self.key(name), _MISSING, "is required")
            return default
        return self.data[name]

    def fail(self, name: str, message: str) -> ScenarioError:
        return ScenarioError(self.key(name), self.data.get(name, _MISSING), message)

    def table(self, name: str, required: bool = False) -> "Table | None":
        if name not in self.data and not required:
            self.used.add(name)
            return None
        return Table(self.raw(name), self.key(name))

    def integer(self, name: str, default: object = _MISSING, minimum: int | None = None) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.fail(name, "must be an integer" + (f" >= {minimum}" if minimum is not None else ""))
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be an integer >= {minimum}")
        return value

    def number(self, name: str, default: object = _MISSING, convert: Callable[[object], float] = float,
               minimum: float | None = 0.0, positive: bool = False, allow_inf: bool = False) -> float:
        value = self.raw(name, default)
        if value is None and default is None:
            return value  # type: ignore[return-value]   (an optional key left unset)
        try:
            if isinstance(value, bool) or value is None:
                raise TypeError
            number = convert(value)
        except (units.UnitError, TypeError, ValueError) as exc:
            hint = str(exc) if isinstance(exc, units.UnitError) else "must be a number"
            raise self.fail(name, hint) from None
        if math.isnan(number) or (math.isinf(number) and not allow_inf):
            raise self.fail(name, "must be a finite number")
        if positive and not number > 0:
            raise self.fail(name, "must be > 0")
        if minimum is not None and number < minimum:
            raise self.fail(name, f"must be >= {minimum:g}")
        return number

    def duration(self, name: str, default: object = _MISSING, **kw: Any) -> float:
        return self.number(name, default, convert=units.duration, **kw)

    def boolean(self, name: str, default: object = _MISSING) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def string(self, name: str, default: object = _MISSING, choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}")
        return value

    def dist(self, name: str, default: object = _MISSING,
             convert: Callable[[object], float] = units.duration) -> distributions.Dist:
        value = self.raw(name, default)
        try:
            return distributions.parse(value, convert)
        except distributions.DistError as exc:
            key = self.key(name) + (f".{exc.key}" if exc.key else "")
            shown = _MISSING if exc.missing else (exc.value if exc.key else value)
            raise ScenarioError(key, shown, str(exc)) from None

    def done(self) -> None:
        """Raise on the first key that nobody read (a typo), suggesting the closest known key."""
        for name in self.data:
            if name not in self.used:
                close = difflib.get_close_matches(name, sorted(self.used), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(sorted(self.used))
                raise ScenarioError(self.key(name), self.data[name], f"unknown key{hint}; known keys: {known}")
