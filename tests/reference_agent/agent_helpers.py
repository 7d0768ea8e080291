"""Helpers shared by the reference agent's tests: ids, status codes, the in-process agent harness."""
from __future__ import annotations

import sys

from agent_harness import InProcessAgent
from shared_helpers import code_of, new_id  # noqa: F401  (re-exported to the tests)


Harness = InProcessAgent   # the reference agent's tests call it by this name


def running_version() -> str:
    v = sys.version_info
    return f"{v.major}.{v.minor}.{v.micro}"
