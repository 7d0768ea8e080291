"""The CI examples of docs/CONFORMANCE.md, read as written: the GitHub Actions command line and the GitLab
CI script, with the toolkit's console commands run from this checkout (same interpreter, same code)."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFORMANCE.md"
COMMANDS = {"agent-conformance": f"{sys.executable} -m conformance.cli",
            "reference-agent": f"{sys.executable} -m reference_agent"}


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text("utf-8"), re.S)


def _block(marker: str) -> str:
    found = [b for b in yaml_blocks() if marker in b]
    assert len(found) == 1, f"docs/CONFORMANCE.md: expected one yaml block with {marker!r}, found {len(found)}"
    return found[0]


def github_args() -> list[str]:
    """The arguments of the `agent-conformance` step of the GitHub Actions example (a folded `run: >`)."""
    block = _block("runs-on:")
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- run: >" and
                 lines[i + 1].strip() == "agent-conformance")
    body = []
    for line in lines[start + 1:]:
        if not line.startswith(" " * 10):
            break
        body.append(line.strip())
    words = shlex.split(" ".join(body))
    assert words[0] == "agent-conformance"
    return words[1:]


def gitlab_script(section: str = "script") -> list[str]:
    """The commands of the GitLab CI example's `script:` (or `after_script:`): `- ` items, continued on
    deeper-indented lines (YAML plain scalars folded with a space)."""
    lines = _block("image: python").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{section}:")
    items: list[str] = []
    for line in lines[start + 1:]:
        if line.startswith("    - "):
            items.append(line[6:].strip())
        elif line.startswith("        ") and items:
            items[-1] += " " + line.strip()
        else:
            break
    return items


def local(command: str) -> str:
    """`command` with the toolkit's console commands replaced by this checkout's modules."""
    for name, replacement in COMMANDS.items():
        command = re.sub(rf"(?<![\w/-]){re.escape(name)}(?![\w-])", replacement, command)
    return command
