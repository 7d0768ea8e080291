"""docs/SIMULATOR.md's scenario key table, generated from the schema (`simulator.scenario.SECTIONS`).

    python -m simulator.keydocs                            # print the table
    python -m simulator.keydocs --write docs/SIMULATOR.md  # replace it between the markers

tests/simulator/test_sim_schema.py fails when the file's table and the schema disagree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator import schema
from simulator.distributions import KINDS
from simulator.scenario import SECTIONS

BEGIN = "<!-- scenario keys: generated from simulator/scenario.py by `python -m simulator.keydocs --write docs/SIMULATOR.md` -->"
END = "<!-- end of scenario keys -->"


def table() -> str:
    return schema.markdown_table(SECTIONS) + "\n" + distributions() + "\n"


def distributions() -> str:
    """One line per registered distribution (`distributions.KINDS`)."""
    lines = ["Distributions (a key taking one takes a number, a fixed value, or one of these tables):", ""]
    for name, kind in KINDS.items():
        lines.append(f"- `{{dist = \"{name}\", {kind.example}}}`: {KINDS.doc(name)}")
    return "\n".join(lines) + "\n"


def replace(text: str) -> str:
    """`text` with the block between the markers replaced by the generated table."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are not both in the file, in that order")
    return text[: start + len(BEGIN)] + "\n" + table() + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.keydocs", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="replace the table between the markers in FILE")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(table())
        return 0
    path = Path(args.write)
    path.write_text(replace(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
