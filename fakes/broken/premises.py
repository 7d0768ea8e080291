"""Broken agents for the checks of a run's premises and of statistical claims (issue 19): defects that a
weaker check passes by chance."""
from __future__ import annotations

import random

from fakes.broken._registry import register
from protos import validation
from reference_agent.domain import AgentCore


@register
class PicksInterpreterAtRandom(AgentCore):
    """Picks uniformly at random among the interpreters that satisfy a job's requirements (not deterministic).

    Shows only with two or more satisfying interpreters: serve it with an extra --python (the suite's
    own tests give it the base interpreter of the running virtual environment)."""

    violates = ("AGT-RUN-5",)
    shows_in = ("test_interpreter_choice_satisfies_and_is_deterministic",)

    def choose_interpreter(self, req):
        chosen = super().choose_interpreter(req)   # the reference's refusals when none satisfies
        satisfying = [i for i in self.interpreters.available() if not i.prerelease
                      and validation.choose_interpreter(list(req.requirements), [i.version]) is not None]
        return random.choice(satisfying) if satisfying else chosen
