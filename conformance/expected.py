"""The expected-failures file: `ID  # message prefix` lines (protobuf conformance style)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from protos.requirements import ALL_REQUIREMENTS as REQUIREMENTS  # v1 and ext IDs

HEADER = ("# agent-conformance expected failures: one 'ID  # message prefix' per line.\n"
          "# A listed failure does not fail the run; a listed ID that passes, or fails with\n"
          "# another message, does. Regenerate with --update-expected.\n")


class ExpectedError(ValueError):
    """A malformed line; the message names the file, the line number and the text."""


def parse(text: str, name: str = "<expected>") -> dict[str, list[str]]:
    """ID -> message prefixes ('' matches any message of that ID)."""
    out: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        rid, _, prefix = body.partition("#")
        rid = rid.strip()
        if rid not in REQUIREMENTS:
            raise ExpectedError(f"{name}:{number}: {rid!r} is not a requirement ID of PROTOCOL-V1 or PROTOCOL-EXT "
                                f"(line {line!r})")
        out.setdefault(rid, []).append(prefix.strip())
    return out


def load(path: str | Path) -> dict[str, list[str]]:
    return parse(Path(path).read_text("utf-8"), str(path))


def matches(expected: dict[str, list[str]], rid: str, summary: str) -> bool:
    return any(summary.startswith(prefix) for prefix in expected.get(rid, ()))


def render(failures: Iterable[tuple[str, str]]) -> str:
    lines = sorted(set(failures), key=lambda f: (list(REQUIREMENTS).index(f[0]), f[1]))
    return HEADER + "".join(f"{rid}  # {summary}\n" for rid, summary in lines)
