"""Agent failures per AGT-DUR-1, and what the client sees when it polls a down agent."""
from __future__ import annotations

from protos.states import Event
from simulator.clock import P_AGENT, P_SEEN
from simulator.entities import Agent


class Failures:
    """Mixin of Simulation: an agent alternates up and down; at a failure its RUN jobs end DONE
    (interrupted), its WAIT jobs stay WAIT and start after the repair; polls during the downtime
    fail, so the client sees DONE at its first poll after the repair and may resubmit.
    """

    def _seen(self, arg) -> None:
        job, outcome = arg
        agent = job.agent
        if not agent.up:   # polls fail while the agent is down; DONE is seen at the first after repair
            job.seen, job.polls = self.polls.first_at_or_after(job.run_submit, agent.repair_at)
            self.at(job.seen - self.env._now, P_SEEN, self._seen, arg)
            return
        c = self.sc.clients
        resubmit = outcome == "interrupted" and c.resubmit_interrupted and job.attempt < c.max_resubmits
        self._finalize(job, outcome, final=not resubmit)
        if resubmit:
            self._submit(job.logical, job.attempt + 1, job.first_submit, job.runtime, job.files, job.python,
                         job.fails)

    # --- agent failures (AGT-DUR-1) -----------------------------------------------------------------
    def _fail(self, agent: Agent) -> None:
        ttf, ttr = self._failure_samplers[agent.gi]
        agent.up = False
        now = self.env._now
        agent.repair_at = now + ttr()
        self._touch(agent)
        for job in sorted(agent.runset, key=lambda j: j.start):   # RUN jobs end DONE (interrupted)
            job.end_ev.cancel()
            job.sm.advance(Event.INTERRUPT)
            self._ended(job, "interrupted")
        agent.runset.clear()
        self.at(agent.repair_at - now, P_AGENT, self._repair, agent)   # WAIT jobs stay WAIT

    def _repair(self, agent: Agent) -> None:
        agent.up = True
        for pool in agent.pools:
            pool.touched(agent)
        self._refill(agent)
        if not self.when_free:   # jobs parked at the client while every eligible agent was down
            for pool in agent.pools:
                q = self.central[pool]
                while q:
                    chosen = self.choose(pool, q[0], self.streams.policy, False)
                    if chosen is None:
                        break
                    self.central_count -= 1
                    self._assign(q.popleft(), chosen)
        if not self.finished.triggered:
            self.at(self._failure_samplers[agent.gi][0](), P_AGENT, self._fail, agent)
