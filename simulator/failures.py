"""Agent failures per AGT-DUR-1, and what the client sees when it polls a down agent."""
from __future__ import annotations

from typing import Callable, Protocol

from protos.states import Event
from simulator.clock import P_AGENT, P_SEEN, Call
from simulator.entities import Agent


class Host(Protocol):
    """What failures need from the simulation they are part of."""

    env: object
    at: Callable[..., Call]
    polls: object
    clients: object
    finished: object
    def _finalize(self, job, outcome: str, final: bool = True) -> None: ...
    def _submit(self, *args) -> None: ...
    def _ended(self, job, outcome: str) -> None: ...
    def agent_up(self, agent: Agent) -> None: ...


class Failures:
    """An agent alternates up and down; at a failure its RUN jobs end DONE (interrupted), its WAIT
    jobs stay WAIT and start after the repair; polls during the downtime fail, so the client sees
    DONE at its first poll after the repair and may resubmit.
    """

    def __init__(self, host: Host, scenario, streams):
        self.host = host
        self.at = host.at
        self.clients = scenario.clients
        self.rng = streams.failures
        self.groups = scenario.agents
        self.samplers: list = []

    def start(self, agents: list[Agent]) -> None:
        """Schedule every agent's first failure, then build the per-group samplers (that order
        of draws is part of the seeded results)."""
        for a in agents:
            f = self.groups[a.gi].failures
            if f is not None:
                self.at(f.time_to_failure.sampler(self.rng)(), P_AGENT, self._fail, a)
        self.samplers = [(g.failures.time_to_failure.sampler(self.rng), g.failures.time_to_repair.sampler(self.rng))
                         if g.failures else None for g in self.groups]

    def seen(self, arg) -> None:
        job, outcome = arg
        agent = job.agent
        host = self.host
        if not agent.up:   # polls fail while the agent is down; DONE is seen at the first after repair
            job.seen, job.polls = host.clients.seen_after(job, agent.repair_at)
            self.at(job.seen - host.env._now, P_SEEN, self.seen, arg)
            return
        c = self.clients
        resubmit = outcome == "interrupted" and c.resubmit_interrupted and job.attempt < c.max_resubmits
        host._finalize(job, outcome, final=not resubmit)
        if resubmit:
            host._submit(job.logical, job.attempt + 1, job.first_submit, job.runtime, job.files, job.python,
                         job.fails, job.cls)

    def _fail(self, agent: Agent) -> None:
        host = self.host
        agent.up = False
        now = host.env._now
        agent.repair_at = now + self.samplers[agent.gi][1]()
        for pool in agent.pools:
            pool.touched(agent)
        for job in sorted(agent.runset, key=lambda j: j.start):   # RUN jobs end DONE (interrupted)
            job.end_ev.cancel()
            job.sm.advance(Event.INTERRUPT)
            host._ended(job, "interrupted")
        agent.runset.clear()
        self.at(agent.repair_at - now, P_AGENT, self._repair, agent)   # WAIT jobs stay WAIT

    def _repair(self, agent: Agent) -> None:
        agent.up = True
        self.host.agent_up(agent)
        if not self.host.finished.triggered:
            self.at(self.samplers[agent.gi][0](), P_AGENT, self._fail, agent)
