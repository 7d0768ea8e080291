"""The premises of a run, checked before any verdict, each in seconds: a set-up mistake (a witness folder
the agent's jobs cannot write, a wrong --slots) is a usage error naming the option, never a requirement
failure found minutes later. Inconclusive when the agent itself misbehaves: the suite's tests judge that."""
from __future__ import annotations

import time

from conformance.env import Env
from conformance.violations import AgentUnavailable, Violation
from protos.states import JobState

WAIT = 8.0   # seconds (times --time-scale) per premise: the jobs are tiny, a working agent needs < 1 s


class PremiseError(Exception):
    """A premise of the run does not hold; the message names the option to fix. Exit 2."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def check(target) -> list[str]:
    """Check the witness folder and the slot count of `target`; return what was confirmed (lines for
    the header and the JSON report). Raises PremiseError, or AgentUnavailable."""
    if target.witness is None:
        return []
    env = Env(target)
    try:
        return _check(env, target)
    except Violation:
        return []   # the agent misbehaves on the premise jobs themselves: the tests will say how
    finally:
        env.cleanup()


def _states(env: Env, jobs: list[str]) -> dict[str, JobState | None]:
    out: dict[str, JobState | None] = {}
    for job in jobs:
        reply = env.run_call(job)
        out[job] = reply.state if reply.ok else None
    return out


def _check(env: Env, target) -> list[str]:
    witness, slots, timing = target.witness, target.slots, target.timing
    count = slots or 1
    # every slot held by a job that waits for its gate: none can end, so as many start as there are slots
    jobs = [env.job("AGT-RUN-1", gate=slots is not None) for _ in range(count)]
    limit = time.monotonic() + timing(WAIT)
    started: list[str] = []
    while time.monotonic() < limit:
        started = [j for j in jobs if witness.started(j)]
        if len(started) == count:
            break
        # no early end when the jobs are DONE without a witness: an agent that reports DONE too early
        # (an AGT-STATE defect, for the tests to judge) may start them within the deadline
        time.sleep(timing.poll * 5)
    states = _states(env, [j for j in jobs if j not in started])
    if not started:
        ended = [j for j, s in states.items() if s is JobState.DONE]
        if ended:   # the job ran and ended without writing its witness (a job still RUN may just be slow)
            raise PremiseError("--witness-dir", (
                f"--witness-dir {witness.dir}: {len(ended)} job(s) the agent reports DONE left no witness there "
                f"within {timing(WAIT):.0f} s. The agent's jobs must be able to write this folder at the same path "
                f"(shared with the agent's machine or container, writable by the user its jobs run as); if the "
                f"agent is only slow, raise --time-scale"))
        return [f"--witness-dir: not confirmed (no premise job left its witness within {timing(WAIT):.0f} s)"]
    done = [f"--witness-dir {witness.dir}: confirmed (a job's witness appeared)"]
    if slots is None:
        return done
    # a job the agent reports RUN holds a slot even if its witness is not there yet (a slow start); one
    # wrongly reported RUN is AGT-STATE-2's business, judged by the tests
    holding = len(started) + sum(1 for s in states.values() if s is JobState.RUN)
    if holding < count:
        raise PremiseError("--slots", (
            f"--slots {slots}: only {holding} of {slots} jobs ran at once within {timing(WAIT):.0f} s (each "
            f"waits for its gate file, so none could end and free a slot; the others stayed WAIT). Give the agent's "
            f"real slot count (--slots {holding}?), or stop the jobs of an earlier run that still hold slots; if the "
            f"agent is only slow to start jobs, raise --time-scale"))
    done.append(f"--slots {slots}: confirmed ({slots} jobs ran at once)")
    return done


__all__ = ["PremiseError", "check", "AgentUnavailable"]
