"""The scenario schema, declared once: each field of a scenario dataclass carries, in its
`dataclasses.field` metadata, its TOML key's type, default, bounds and meaning. From that one
declaration come the parsing (`read`), the defaults, the unknown-key errors with "did you mean"
(the known keys are the declared ones) and docs/SIMULATOR.md's key table (`markdown_table`;
a test fails when the file and the schema disagree; `python -m simulator.schema --write
docs/SIMULATOR.md` rewrites the table).

Why dataclass metadata and not msgspec or attrs/cattrs: the scenario types are frozen stdlib
dataclasses read all over the model and the tests, the error messages must name the dotted key
and the bad value in the toolkit's own words, and every quantity goes through `protos.units`;
a decoder library would need a hook per field for all three, and none of them is installed.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from protos import units
from simulator.checks import MISSING, Table
from simulator.registry import Registry


REQUIRED: Any = MISSING


@dataclass(frozen=True)
class Derived:
    """A default computed from the keys read before it (`fn(values)`), shown as `shown`."""

    fn: Callable[[dict], Any]
    shown: str


_UNITS = {"duration": units.duration, "bandwidth": units.bandwidth, "size": units.size, "number": float}


@dataclass(frozen=True)
class Key:
    """One scenario key. `kind`: int, number, duration, bandwidth, size (numbers; `minimum`,
    `positive`, `allow_inf`), bool, string, choice (`choices`: a tuple or a Registry), dist (a
    distribution; `unit` its parameters' unit), table / tables (a nested dataclass `schema`, one
    table or an array of them), custom (`read(table, name, values)`). A default of None makes the
    key optional (absent: None); REQUIRED makes it required."""

    kind: str
    default: Any = REQUIRED
    doc: str = ""
    toml: str | None = None
    minimum: float | None = None
    positive: bool = False
    allow_inf: bool = False
    choices: tuple | Registry | None = None
    unit: str = "duration"
    schema: type | None = None
    read: Callable[[Table, str, dict], Any] | None = None
    shown: str | None = None


def key(kind: str, default: Any = REQUIRED, doc: str = "", *, init: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field declaring its scenario key; `init` is the dataclass's own default."""
    return field(default=init, metadata={"key": Key(kind, default, doc, **kw)})


def keys_of(cls: type) -> list[tuple[str, Key]]:
    """(field name, Key) of every declared key of a scenario dataclass, in declaration order."""
    return [(f.name, f.metadata["key"]) for f in fields(cls) if "key" in f.metadata]


_CHECKS: dict[type, Callable[[dict, Table, dict], None]] = {}


def check(cls: type) -> Callable:
    """Decorator: `fn(values, table, context)` checks a section's keys together (runs after them)."""
    def register(fn: Callable[[dict, Table, dict], None]) -> Callable:
        _CHECKS[cls] = fn
        return fn
    return register


def read(cls: type, t: Table, context: dict | None = None) -> Any:
    """Build `cls` from table `t`: every declared key read in order, then the section's check,
    then unknown keys refused (with the closest declared one)."""
    values: dict[str, Any] = {}
    ctx = context or {}
    for name, spec in keys_of(cls):
        values[name] = read_key(t, spec.toml or name, spec, values, ctx)
    for name, spec in keys_of(cls):
        t.used.add(spec.toml or name)
    fn = _CHECKS.get(cls)
    if fn is not None:
        fn(values, t, ctx)
    t.done()
    return cls(**{k: v for k, v in values.items() if not k.startswith("_")})


def default_of(spec: Key, values: dict, ctx: dict) -> Any:
    d = spec.default
    return d.fn({**ctx, **values}) if isinstance(d, Derived) else d


def read_key(t: Table, name: str, spec: Key, values: dict, ctx: dict) -> Any:
    kind = spec.kind
    if spec.read is not None:
        return spec.read(t, name, {**ctx, **values})
    default = default_of(spec, values, ctx)
    if default is None and not t.has(name):
        t.raw(name, None)
        return None
    if kind in ("table", "tables"):
        return _read_tables(t, name, spec, values, ctx)
    if kind == "int":
        return t.integer(name, default, minimum=spec.minimum)       # type: ignore[arg-type]
    if kind in _UNITS:
        minimum = 0.0 if spec.minimum is None else spec.minimum
        return t.number(name, default, convert=_UNITS[kind], minimum=minimum, positive=spec.positive,
                        allow_inf=spec.allow_inf)
    if kind == "bool":
        return t.boolean(name, default)
    if kind == "string":
        return t.string(name, default)
    if kind == "choice":
        return _read_choice(t, name, spec, default)
    if kind == "dist":
        return t.dist(name, default, convert=_UNITS[spec.unit])
    raise TypeError(f"unknown key kind {kind!r}")


def _read_choice(t: Table, name: str, spec: Key, default: Any) -> str:
    value = t.raw(name, default)
    choices = spec.choices
    names = choices.names() if isinstance(choices, Registry) else list(choices or ())
    if not isinstance(value, str) or value not in names:
        import difflib
        close = difflib.get_close_matches(value, names, n=1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise t.fail(name, f"must be one of {', '.join(names)}{hint}")
    return value


def _read_tables(t: Table, name: str, spec: Key, values: dict, ctx: dict) -> Any:
    inner = {**ctx, **values}
    if spec.kind == "table":
        sub = t.table(name, required=True)
        return read(spec.schema, sub, inner)   # type: ignore[arg-type]
    raw = t.raw(name)
    if not isinstance(raw, list) or not raw:
        raise t.fail(name, f"must be one or more [[{t.key(name)}]] tables")
    return tuple(read(spec.schema, Table(item, t.key(f"{name}[{i}]")), {**inner, "_index": i})   # type: ignore[arg-type]
                 for i, item in enumerate(raw))


# --- the docs' key table ------------------------------------------------------------------------

def shown_default(spec: Key) -> str:
    if spec.shown is not None:
        return spec.shown
    d = spec.default
    if isinstance(d, Derived):
        return d.shown
    if d is REQUIRED:
        return "(required)"
    if d is None:
        return "none"
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, str):
        return f"`{d}`"
    if isinstance(d, float) and math.isinf(d):
        return "inf"
    if spec.kind == "duration" and isinstance(d, (int, float)):
        return f"{d:g}s" if d else "0"
    if isinstance(d, float):
        return repr(d)
    if isinstance(d, int):
        return f"{d:d}"
    return str(d)


def meaning(spec: Key) -> str:
    text = spec.doc
    choices = spec.choices
    if isinstance(choices, Registry):
        listed = "; ".join(f"`{n}`: {choices.doc(n)}" if choices.doc(n) else f"`{n}`" for n in choices)
        extra = ", or `\"module:function\"` of your own" if choices.user_spec else ""
        text = f"{text}: {listed}{extra}" if text else f"{listed}{extra}"
    elif choices:
        listed = ", ".join(f"`{c}`" for c in choices)
        text = f"{text} ({listed})" if text else listed
    return text.replace("|", "\\|")


def rows(cls: type, header: str, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, meaning) rows of a section and, after it, of its nested tables."""
    out: list[tuple[str, str, str]] = []
    nested: list[tuple[str, Key]] = []
    first = True
    for name, spec in keys_of(cls):
        toml = spec.toml or name
        if spec.kind in ("table", "tables") and spec.shown is None:
            nested.append((toml, spec))
            continue
        label = f"`{toml}`"
        if spec.kind == "tables":
            label = f"`[[{prefix}{toml}]]`"
        elif first:
            label = f"`{header}` {label}"
        first = False
        out.append((label, shown_default(spec), meaning(spec)))
    for toml, spec in nested:
        sub = f"{prefix}{toml}"
        head = f"[[{sub}]]" if spec.kind == "tables" else f"[{sub}]"
        out.extend(rows(spec.schema, head, sub + "."))   # type: ignore[arg-type]
    return out


def markdown_table(sections: list[tuple[str, type]]) -> str:
    """The key table of docs/SIMULATOR.md, from the schema."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for header, part in sections:
        if isinstance(part, Key):      # a key documented by one row (an array of tables)
            lines.append(f"| `{header}` | {shown_default(part)} | {meaning(part)} |")
            continue
        prefix = header.strip("[]") + "."
        for label, default, text in rows(part, header, prefix):
            lines.append(f"| {label} | {default} | {text} |")
    return "\n".join(lines) + "\n"
