"""Broken agents: the reference agent with exactly one defect each, named after it (CATALOGUE)."""
from __future__ import annotations

from fakes.broken._registry import CATALOGUE, build_server, describe, layer, register
from fakes.broken import jobs, staging, surface  # noqa: F401 - importing registers the agents
from fakes.broken.jobs import *  # noqa: F401,F403
from fakes.broken.staging import *  # noqa: F401,F403
from fakes.broken.surface import *  # noqa: F401,F403

__all__ = ["CATALOGUE", "build_server", "describe", "layer", "register", *sorted(CATALOGUE)]
