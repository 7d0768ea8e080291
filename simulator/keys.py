"""Dotted scenario keys (`agents[gpu].count`): setting one in a raw table, and `--set KEY=VALUE`."""
from __future__ import annotations

import re
import tomllib
from typing import Any

from simulator.checks import ScenarioError

_KEY_RE = re.compile(r"(\w+)(?:\[([\w.-]+)\])?")


def set_key(data: dict, key: str, value: Any) -> None:
    """Set a dotted key in a raw scenario table; tables on the way are created (the scenario's own
    validation then names an unknown key, with the closest known one)."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        m = _KEY_RE.fullmatch(part)
        if not m:
            raise ScenarioError(key, value, f"malformed key part {part!r}")
        name, sel = m.group(1), m.group(2)
        last = i == len(parts) - 1
        if name in ("agents", "classes") and (i == 0 or (name == "classes" and parts[i - 1] == "workload")):
            if last:
                raise ScenarioError(key, value, f"name a key inside {name}, like {name}.count")
            node = _select(data if name == "agents" else node, name, sel, key, value)
            continue
        if last:
            node[name] = value
        else:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ScenarioError(key, value, f"{name} is not a table")


def _select(parent: dict, name: str, sel: str | None, key: str, value: Any) -> dict:
    """The one table of an array of tables (agent groups, job classes), by name or index."""
    items = parent.get(name)
    if items is None:
        raise ScenarioError(key, value, f"the scenario has no {name}")
    items = [items] if isinstance(items, dict) else items
    parent[name] = items
    prefix = "group" if name == "agents" else "class"
    if sel is None:
        if len(items) != 1:
            names = ", ".join(f"{name}[{g.get('name', f'{prefix}{j}')}]" for j, g in enumerate(items))
            raise ScenarioError(key, value, f"the scenario has {len(items)} {name}: name one ({names})")
        return items[0]
    match = [g for j, g in enumerate(items) if g.get("name", f"{prefix}{j}") == sel or str(j) == sel]
    if not match:
        known = ", ".join(str(g.get("name", f"{prefix}{j}")) for j, g in enumerate(items))
        raise ScenarioError(key, value, f"no {'agent group' if name == 'agents' else 'job class'} named {sel!r} (known: {known})")
    return match[0]


def parse_value(text: str) -> Any:
    """A --set value as TOML (40, 2.5, true, [1, 2], {dist = "fixed", value = 3}, "x"), else the
    text itself (30s, 10Gbit/s, least_loaded): the scenario's own checks then judge it."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(spec: str) -> tuple[str, Any]:
    """'workload.rate=40' -> ('workload.rate', 40). Raises ValueError naming the malformed spec."""
    key, sep, raw = spec.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ValueError(f"--set {spec!r}: expected KEY=VALUE, like workload.rate=40 or network.source_bandwidth=40Gbit/s")
    for part in key.split("."):
        if not _KEY_RE.fullmatch(part):
            raise ValueError(f"--set {spec!r}: malformed key part {part!r} (keys are dotted, like agents[gpu].count)")
    return key, parse_value(raw)
