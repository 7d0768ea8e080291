"""The simulation engine: agents and jobs on SimPy's clock, each job on the protocol's state machine."""
from __future__ import annotations

import math
import random
from collections import deque
from typing import Callable

import numpy as np
import simpy

from protos import validation
from protos.states import Event, JobStateMachine
from simulator import policies
from simulator.clock import P_AGENT, P_ARRIVAL, P_END, P_SAMPLE, P_SEEN, Clock
from simulator.entities import Agent, Job, Streams
from simulator.failures import Failures
from simulator.metrics import Binned, Collector, JobRecord, summarize
from simulator.network import Transfers
from simulator.polling import PollSchedule
from simulator.scenario import Scenario
from simulator.staging import Staging
from simulator.workload import Arrivals, FileCatalog, expected_span

__all__ = ["Simulation", "Streams", "Agent", "Job"]


class Simulation(Staging, Failures):
    """One replication of a scenario. `run()` returns the flat summary of that replication.

    Jobs go StageInFiles -> RunJob -> polls until DONE; on the agent each job is a
    `protos.states.JobStateMachine` advanced by START and then SUCCEED, FAIL or INTERRUPT.
    `sink` receives every JobRecord as it completes (stream it to disk: memory then grows with
    agents and jobs in flight only); `tracer(time, kind, job)` sees every lifecycle step.
    """

    SAMPLES = 200   # state-count samples aimed at; the interval doubles if the run is longer

    def __init__(self, scenario: Scenario, replication: int = 0, *, streams: Streams | None = None,
                 sink: Callable[[JobRecord], None] | None = None, tracer: Callable | None = None,
                 progress: Callable[[float], None] | None = None):
        self.sc = sc = scenario
        self.streams = streams or Streams.from_seed(sc.run.seed, replication)
        self.env = simpy.Environment()
        self.clock = clock = Clock(self.env)
        self.at = clock.at
        self.tracer = tracer
        self.progress = progress
        self.sink = sink
        self.collector = Collector()
        self.group_names = [g.name for g in sc.agents]
        self.agents: list[Agent] = []
        for gi, g in enumerate(sc.agents):
            for _ in range(g.count):
                self.agents.append(Agent(len(self.agents), g.name, gi, g.slots, g.speed))
        self.versions = {g.name: g.python for g in sc.agents}
        self._pools: dict[str, policies.Pool | None] = {}
        self.choose = policies.resolve(sc.clients.policy)
        self.when_free = sc.clients.dispatch == "when_free"
        self.track_pools = self.when_free or getattr(self.choose, "needs_heap", False)
        self.central: dict[policies.Pool, deque] = {}
        self.central_count = 0
        net = sc.network
        self.staging_on = net.enabled
        self.holders: dict[int, set] = {}     # file -> agents caching it (for cache_affinity)
        self.track_holders = self.choose is policies.cache_affinity
        self.use_cache = net.cache
        self.cache_capacity = net.cache_capacity
        self.lru = net.cache_capacity != math.inf
        self.file_sizes: list[float] = []
        if net.enabled:
            self.catalog = FileCatalog(sc, self.streams.catalog or random.Random(0), self.streams.files)
            self.file_sizes = self.catalog.sizes
            links = [g.link_bandwidth or net.link_bandwidth for g in sc.agents for _ in range(g.count)]
            self.instant = [min(net.source_bandwidth, link) == math.inf for link in links]
            self.transfers = Transfers(clock, net.source_bandwidth, links)
        self.has_failures = any(g.failures for g in sc.agents)
        c = sc.clients
        self.polls = PollSchedule(c.poll_interval, c.poll_backoff, c.poll_max_interval)
        self.lat = c.rpc_latency
        self.cost_run, self.cost_stage, self.cost_poll = c.rpc_cost_run, c.rpc_cost_stage, c.rpc_cost_poll
        self.fail_p = sc.workload.fail_probability
        self.fetch_delay = c.rpc_latency + sc.network.source_latency   # request to usable content
        self.span = expected_span(sc)
        self.sample_dt = sc.run.sample_interval or max(self.span / self.SAMPLES, 1e-9)
        self.rpc_bins = [Binned(self.sample_dt) for _ in sc.agents]
        self.samples: list[tuple] = []
        self.finished = self.env.event()
        self.arrivals_done = False
        self.outstanding = 0
        self.ended = self.waiting = self.staging = 0
        self.next_id = 0          # logical jobs submitted
        self.next_attempt = 0     # attempts submitted (ids in submission order)
        self.arrived_window = 0
        self.warm = sc.run.warmup <= 0 and sc.run.warmup_jobs <= 0
        self.window_start = 0.0
        # time integrals: jobs in system (Little's law) and busy slots per group (utilisation)
        self.in_system = 0
        self.submit_sum = self.end_sum = 0.0   # Little's identity over the whole run
        self.ns_area = self.ns_t = 0.0
        self.busy = [0] * len(sc.agents)
        self.busy_area = [0.0] * len(sc.agents)
        self.busy_t = [0.0] * len(sc.agents)
        self.snap_ns = 0.0
        self.snap_busy = [0.0] * len(sc.agents)
        self.window_end: float | None = None     # arrivals stop: statistics window closes
        self.close_ns = 0.0
        self.close_busy = [0.0] * len(sc.agents)
        self.ended_window = 0                    # jobs that reached DONE inside the window
        self.bytes_requested = 0.0
        self.arrivals = Arrivals(sc, self.streams.arrivals)
        self.runtime = sc.workload.runtime.sampler(self.streams.service) if sc.workload.runtime else None
        mix = sc.workload.python
        self.mix_texts = [t for t, _ in mix]
        self.mix_cum = list(np.cumsum([w for _, w in mix]) / sum(w for _, w in mix))

    # --- pools of eligible agents ---------------------------------------------------------------
    def pool_for(self, text: str) -> policies.Pool | None:
        pool = self._pools.get(text, False)
        if pool is False:
            req = [validation.parse_python_version(text)]
            eligible = [a for a in self.agents if validation.choose_interpreter(req, self.versions[a.group])]
            track = self.track_pools
            pool = policies.Pool(eligible, track) if eligible else None
            if pool is not None:
                for a in eligible:
                    a.pools.append(pool)
                self.central[pool] = deque()
            self._pools[text] = pool
        return pool

    def _touch(self, agent: Agent) -> None:
        for pool in agent.pools:
            pool.touched(agent)

    # --- run control ---------------------------------------------------------------------------
    def run(self) -> dict:
        sc = self.sc
        self._iter = iter(self.arrivals)
        self._schedule_next_arrival()
        for a in self.agents:
            f = sc.agents[a.gi].failures
            if f is not None:
                self.at(f.time_to_failure.sampler(self.streams.failures)(), P_AGENT, self._fail, a)
        self._failure_samplers = [
            (g.failures.time_to_failure.sampler(self.streams.failures), g.failures.time_to_repair.sampler(self.streams.failures))
            if g.failures else None for g in sc.agents]
        if sc.run.warmup > 0:
            self.at(sc.run.warmup, P_AGENT, self._maybe_warm, None)
        self.at(self.sample_dt, P_SAMPLE, self._sample, None)
        if sc.run.duration is not None:
            self.at(sc.run.duration, P_SAMPLE, self._close_window, None)
        if sc.run.duration is not None and not sc.run.drain:
            self.env.run(until=sc.run.duration)
            self._close_window()
        else:
            self._check_finished()
            self.env.run(until=self.finished)
        return self._summary()

    def _check_finished(self) -> None:
        if self.arrivals_done and self.outstanding == 0 and not self.finished.triggered:
            self.finished.succeed()

    def _close_window(self, _=None) -> None:
        """Statistics are taken over [warm-up end, arrivals end]: snapshot the time integrals."""
        if self.window_end is None:
            self._integrate()
            self.window_end = self.env._now
            self.close_ns = self.ns_area
            self.close_busy = list(self.busy_area)
            if not self.warm:   # the warm-up never ended: an empty window at the end
                self._maybe_warm(force=True)

    def _maybe_warm(self, _=None, force: bool = False) -> None:
        now = self.env._now
        if not self.warm and (force or now >= self.sc.run.warmup and self.next_id >= self.sc.run.warmup_jobs):
            self._integrate()
            self.warm = True
            self.window_start = now
            self.snap_ns = self.ns_area
            self.snap_busy = list(self.busy_area)

    def _integrate(self) -> None:
        now = self.env._now
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now
        for g in range(len(self.busy)):
            self.busy_area[g] += self.busy[g] * (now - self.busy_t[g])
            self.busy_t[g] = now

    def _sample(self, _=None) -> None:
        now = self.env._now
        self.samples.append((now, self.staging, self.central_count, self.waiting, sum(self.busy), self.ended,
                             *self.busy))
        if self.progress is not None:
            self.progress(now)
        if len(self.samples) >= 2 * self.SAMPLES and not self.sc.run.sample_interval:
            # a longer run than expected: halve the resolution, keep memory bounded
            self.samples = self.samples[1::2]
            self.sample_dt *= 2
        if not self.finished.triggered:
            self.at(self.sample_dt, P_SAMPLE, self._sample, None)

    # --- arrivals -------------------------------------------------------------------------------
    def _schedule_next_arrival(self) -> None:
        item = next(self._iter, None)
        if item is None:
            self.arrivals_done = True
            if self.sc.run.duration is None:
                self._close_window()
            self._check_finished()
            return
        self.at(max(0.0, item[0] - self.env._now), P_ARRIVAL, self._arrive, item)

    def _arrive(self, item) -> None:
        _, runtime, python = item
        if runtime is None:
            runtime = max(0.0, self.runtime())
        if python is None:
            python = self.mix_texts[0] if len(self.mix_texts) == 1 else \
                self.mix_texts[min(np.searchsorted(self.mix_cum, self.streams.service.random(), side="right"),
                                   len(self.mix_texts) - 1)]
        fails = self.fail_p > 0 and self.streams.service.random() < self.fail_p   # drawn at arrival (CRN)
        files = self.catalog.draw() if self.staging_on else ()
        jid = self.next_id
        self.next_id += 1
        if not self.warm:
            self._maybe_warm()
        self._submit(jid, 0, self.env._now, runtime, files, python, fails)
        self._schedule_next_arrival()   # after the submission: the run may end when this is None

    def _submit(self, logical: int, attempt: int, first_submit: float, runtime, files, python,
                fails: bool = False) -> None:
        now = self.env._now
        jid = self.next_attempt
        self.next_attempt += 1
        pool = self.pool_for(python)
        job = Job(self, jid, logical, attempt, first_submit, now, runtime, files, python, pool, self.warm)
        job.fails = fails
        if attempt == 0:
            self.outstanding += 1
        if pool is None:
            job.sm = None
            self._finalize(job, "rejected")
            return
        if self.warm:
            self.arrived_window += 1
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now
        self.in_system += 1
        self.submit_sum += now
        if self.tracer:
            self.tracer(now, "submit", job)
        agent = self.choose(pool, job, self.streams.policy, self.when_free)
        if agent is None:
            self.central[pool].append(job)
            self.central_count += 1
        else:
            self._assign(job, agent)

    def _integrate_ns(self) -> None:
        now = self.env._now
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now

    # --- StageInFiles ---------------------------------------------------------------------------
    def _assign(self, job: Job, agent: Agent) -> None:
        job.agent = agent
        agent.load += 1
        if self.track_pools:
            self._touch(agent)
        job.stage_start = self.env._now
        self.staging += 1
        cost = self.cost_stage
        if cost:
            agent.rpc += cost
            self.rpc_bins[agent.gi].point(self.env._now, cost)
        if not self.staging_on or not job.files:
            self._stage_rpc_only(job)
            return
        self._stage_files(job, agent)

    # --- RunJob and the agent's slots --------------------------------------------------------------
    def _runjob(self, job: Job) -> None:
        agent = job.agent
        self.staging -= 1
        job.run_submit = self.env._now
        cost = self.cost_run
        if cost:
            agent.rpc += cost
            self.rpc_bins[agent.gi].point(job.run_submit, cost)
        job.sm = JobStateMachine()        # WAIT: accepted, not started (AGT-RUN-1)
        self.waiting += 1
        if agent.up and agent.running < agent.slots and not agent.queue:
            self._start(job)
        else:
            agent.queue.append(job)

    def _start(self, job: Job) -> None:
        agent = job.agent
        job.sm.advance(Event.START)
        self.waiting -= 1
        gi = agent.gi
        now = self.env._now
        self.busy_area[gi] += self.busy[gi] * (now - self.busy_t[gi])
        self.busy_t[gi] = now
        self.busy[gi] += 1
        agent.running += 1
        job.start = now
        job.end_ev = self.at(job.runtime / agent.speed, P_END, self._end, job)
        if self.has_failures:
            agent.runset.add(job)
        if self.tracer:
            self.tracer(now, "start", job)

    def _end(self, job: Job) -> None:
        failed = job.fails
        job.sm.advance(Event.FAIL if failed else Event.SUCCEED)
        if self.has_failures:
            job.agent.runset.discard(job)
        self._ended(job, "failed" if failed else "succeeded")
        self._refill(job.agent)

    def _ended(self, job: Job, outcome: str) -> None:
        agent = job.agent
        now = self.env._now
        gi = agent.gi
        self.busy_area[gi] += self.busy[gi] * (now - self.busy_t[gi])
        self.busy_t[gi] = now
        self.busy[gi] -= 1
        agent.running -= 1
        agent.load -= 1
        if self.track_pools:
            self._touch(agent)
        self.ended += 1
        if self.warm and self.window_end is None:
            self.ended_window += 1
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now
        self.in_system -= 1
        self.end_sum += now
        job.end = now
        job.end_ev = None   # break the job <-> event cycle: a done job is freed at once, not by the GC
        if self.tracer:
            self.tracer(now, "end", job)
        # the client sees DONE at its first poll at or after the end (computed, not simulated)
        seen, polls = self.polls.first_at_or_after(job.run_submit, now)
        job.polls = polls
        if self.has_failures:
            job.seen = seen
            self.at(seen - now, P_SEEN, self._seen, (job, outcome))
        else:
            job.seen = seen
            self._finalize(job, outcome)

    def _refill(self, agent: Agent) -> None:
        while agent.up and agent.queue and agent.running < agent.slots:
            self._start(agent.queue.popleft())
        if self.when_free and agent.up:
            while agent.load < agent.slots:
                best = None
                for pool in agent.pools:
                    q = self.central[pool]
                    if q and (best is None or q[0].id < best[0].id):
                        best = q
                if best is None:
                    return
                self.central_count -= 1
                self._assign(best.popleft(), agent)

    # --- the client sees DONE -----------------------------------------------------------------------
    def _finalize(self, job: Job, outcome: str, final: bool = True) -> None:
        agent = job.agent
        if job.polls and agent is not None:
            cost = self.cost_poll
            agent.polls += job.polls
            if cost:
                agent.rpc += cost * job.polls
                self.rpc_bins[agent.gi].spread(job.run_submit, job.seen, cost * job.polls)
        if self.sink is not None:
            self.sink(JobRecord(job.id, job.logical, job.attempt, agent.group if agent else "",
                                agent.index if agent else -1, job.python, job.submit, job.first_submit,
                                job.stage_start, job.stage_end, job.run_submit, job.start, job.end, job.seen,
                                job.polls, job.bytes, job.hits, job.misses, outcome, not job.warm))
        self.collector.record(job, outcome, final)
        if final:
            self.outstanding -= 1
            if self.arrivals_done and self.outstanding == 0:
                self._check_finished()

    # --- summary ------------------------------------------------------------------------------------
    def _summary(self) -> dict:
        self._close_window()
        names = self.group_names
        rpc = {g: 0.0 for g in names}
        for a in self.agents:
            rpc[a.group] += a.rpc
        out = summarize(
            self.collector, window=(self.window_start, self.window_end), arrivals_in_window=self.arrived_window,
            ended_in_window=self.ended_window, in_system_area=self.close_ns - self.snap_ns,
            group_busy={g: self.close_busy[i] - self.snap_busy[i] for i, g in enumerate(names)},
            group_capacity={g.name: g.count * g.slots for g in self.sc.agents}, group_rpc=rpc,
            group_count={g.name: g.count for g in self.sc.agents}, unfinished=self.outstanding,
            bytes_requested=self.bytes_requested)
        out["trace_skipped"] = self.arrivals.trace_stats.skipped_unknown_runtime
        # Little's law as an identity over the whole run [0, now]: the integral of the number of
        # jobs in the system equals the sum of their (possibly unfinished) sojourns. Exact on
        # every run (up to rounding); the windowed L vs lambda*W above is the statistical form.
        self._integrate_ns()
        now = self.env._now
        sojourns = self.end_sum + self.in_system * now - self.submit_sum
        out["little_identity_error"] = abs(self.ns_area - sojourns) / max(sojourns, 1e-300) if sojourns > 0 else 0.0
        return out
