"""Helpers shared by the tests of every package: fresh ids and status codes by name."""
from __future__ import annotations

import uuid

from protos.client import AgentCallError


def new_id() -> str:
    """A fresh lower-case UUID: every test uses its own ids, so runs never collide."""
    return str(uuid.uuid4())


def code_of(fn, *args, **kwargs) -> str:
    """The status code name of a client call ("OK" when it succeeds)."""
    try:
        fn(*args, **kwargs)
    except AgentCallError as exc:
        return exc.code_name
    return "OK"


def python_blocks(doc) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of a Markdown file: docs whose examples run."""
    import re
    from pathlib import Path

    text = Path(doc).read_text(encoding="utf-8")
    block = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in block.finditer(text)]
