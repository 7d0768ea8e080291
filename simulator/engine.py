"""The simulation engine: agents and jobs on SimPy's clock, each job on the protocol's state machine."""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import simpy

from protos import validation
from protos.states import Event, JobStateMachine
from simulator import policies
from simulator.autoscale import Scaler, agent_hours
from simulator.clients import ClientModel
from simulator.clock import P_AGENT, P_ARRIVAL, P_END, P_SAMPLE, P_SEEN, Clock
from simulator.entities import Agent, Job, Streams
from simulator.failures import Failures
from simulator.integrals import Integrals
from simulator.metrics import Binned, ClassStats, Collector, JobRecord, TimeBins, summarize
from simulator.polling import PollSchedule
from simulator.scenario import Scenario
from simulator.staging import Staging
from simulator.workload import JobClasses, expected_span

__all__ = ["Simulation", "Streams", "Agent", "Job"]


class Simulation:
    """One replication of a scenario. `run()` returns the flat summary of that replication.

    Jobs go StageInFiles -> RunJob -> polls until DONE; on the agent each job is a
    `protos.states.JobStateMachine` advanced by START and then SUCCEED, FAIL or INTERRUPT.
    `sink` receives every JobRecord as it completes (stream it to disk: memory then grows with
    agents and jobs in flight only); `tracer(time, kind, job)` sees every lifecycle step.

    Composition: `staging` (caches and transfers), `failures` (AGT-DUR-1), `scalers` (autoscaled
    groups) and `integ` (time integrals) are components; each declares what it needs from this
    class as a Protocol (`Host`) and is handed this object.
    """

    SAMPLES = 200   # state-count samples aimed at; the interval doubles if the run is longer

    def __init__(self, scenario: Scenario, replication: int = 0, *, streams: Streams | None = None,
                 sink: Callable[[JobRecord], None] | None = None, tracer: Callable | None = None,
                 progress: Callable[[float], None] | None = None):
        self.sc = sc = scenario
        self.streams = streams or Streams.from_seed(sc.run.seed, replication)
        self.env = simpy.Environment()
        self.clock = Clock(self.env)
        self.at = self.clock.at
        self.tracer, self.progress, self.sink = tracer, progress, sink
        self.collector = Collector()
        if sc.run.bin:
            self.collector.bins = TimeBins(sc.run.bin, sc.run.bin_period)
        if len(sc.job_classes) > 1:
            self.collector.by_class = ClassStats([w.name for w in sc.job_classes])
        self.group_names = [g.name for g in sc.agents]
        self.agents: list[Agent] = []
        for gi, g in enumerate(sc.agents):
            for _ in range(g.autoscale.maximum if g.autoscale else g.count):
                self.agents.append(Agent(len(self.agents), g.name, gi, g.slots, g.speed))
        self.versions = {g.name: g.python for g in sc.agents}
        self._pools: dict[str, policies.Pool | None] = {}
        self.choose = policies.resolve(sc.clients.policy)
        self.when_free = sc.clients.dispatch == "when_free"
        self.track_pools = self.when_free or getattr(self.choose, "needs_heap", False)
        self.central: dict[policies.Pool, deque] = {}
        self.central_count = 0
        jc = JobClasses(sc, self.streams)
        self.arrivals, self.runtimes, self.mixes = jc.arrivals, jc.runtimes, jc.mixes
        self.fail_ps, self.catalogs, self.file_sizes = jc.fail_ps, jc.catalogs, jc.file_sizes
        net = sc.network
        links = [g.link_bandwidth or net.link_bandwidth for a in self.agents for g in (sc.agents[a.gi],)] \
            if net.enabled else None
        self.staging = Staging(self, sc, self.file_sizes, links)
        self.staging.track_holders = self.choose is policies.cache_affinity
        self.failures = Failures(self, sc, self.streams)
        self.has_failures = any(g.failures for g in sc.agents)
        self.scalers = {gi: Scaler(self, gi, g.autoscale, g.count) for gi, g in enumerate(sc.agents) if g.autoscale}
        c = sc.clients
        self.polls = PollSchedule(c.poll_interval, c.poll_backoff, c.poll_max_interval)
        self.clients = ClientModel(self, sc, self.streams)    # poll or watch, cancel (clients.py)
        self.cost_run, self.cost_stage, self.cost_poll = c.rpc_cost_run, c.rpc_cost_stage, c.rpc_cost_poll
        self.span = expected_span(sc)
        self.sample_dt = sc.run.sample_interval or max(self.span / self.SAMPLES, 1e-9)
        self.rpc_bins = [Binned(self.sample_dt) for _ in sc.agents]
        self.samples: list[tuple] = []
        self.finished = self.env.event()
        self.arrivals_done = False
        self.outstanding = 0
        self.ended = self.waiting = self.staging_count = 0
        self.next_id = 0          # logical jobs submitted
        self.next_attempt = 0     # attempts submitted (ids in submission order)
        self.arrived_window = 0
        self.warm = sc.run.warmup <= 0 and sc.run.warmup_jobs <= 0
        self.window_start = 0.0
        self.window_end: float | None = None     # arrivals stop: statistics window closes
        self.ended_window = 0                    # jobs that reached DONE inside the window
        self.integ = Integrals(len(sc.agents))
        self.snap = self.close = (0.0, [0.0] * len(sc.agents))   # integrals at the window's edges
        self.net_open = self.staging.snapshot()
        self.net_close = None
        self.scale_open: dict[int, float] = {gi: 0.0 for gi in self.scalers}
        self.scale_close: dict[int, float] = {}

    # --- pools of eligible agents ---------------------------------------------------------------
    def pool_for(self, text: str) -> policies.Pool | None:
        pool = self._pools.get(text, False)
        if pool is False:
            req = [validation.parse_python_version(text)]
            eligible = [a for a in self.agents if validation.choose_interpreter(req, self.versions[a.group])]
            track = self.track_pools
            pool = policies.Pool([a for a in eligible if not a.off], track) if eligible else None
            if pool is not None:
                for a in eligible:
                    a.pools.append(pool)
                self.central[pool] = deque()
            self._pools[text] = pool
        return pool

    def _touch(self, agent: Agent) -> None:
        for pool in agent.pools:
            pool.touched(agent)

    def agent_up(self, agent: Agent) -> None:
        """An agent serves again (repaired, or provisioned by the autoscaler): it takes its WAIT jobs,
        then jobs parked at the client while no eligible agent was up."""
        self._touch(agent)
        self._refill(agent)
        if not self.when_free:
            for pool in agent.pools:
                q = self.central[pool]
                while q:
                    chosen = self.choose(pool, q[0], self.streams.policy, False)
                    if chosen is None:
                        break
                    self.central_count -= 1
                    self._assign(q.popleft(), chosen)

    # --- run control ---------------------------------------------------------------------------
    def run(self) -> dict:
        sc = self.sc
        self._iter = iter(self.arrivals)
        self._schedule_next_arrival()
        self.failures.start(self.agents)
        if sc.run.warm_cache:   # caches as the popularity model leaves them
            self.staging.prefill(self.agents, self.catalogs, [(c.mean_rate or 1.0) * max(1.0, c.files.count.mean)
                                                              for c in sc.job_classes])
        for scaler in self.scalers.values():
            scaler.start()
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

    def _edges(self) -> tuple:
        """Everything integrated over time, as of now (for the statistics window's edges)."""
        for scaler in self.scalers.values():
            scaler.integrate()
        return (self.integ.snapshot(self.env._now), self.staging.snapshot(),
                {gi: s.active_area for gi, s in self.scalers.items()})

    def _close_window(self, _=None) -> None:
        """Statistics are taken over [warm-up end, arrivals end]: snapshot the time integrals."""
        if self.window_end is None:
            self.close, self.net_close, self.scale_close = self._edges()
            self.window_end = self.env._now
            if not self.warm:   # the warm-up never ended: an empty window at the end
                self._maybe_warm(force=True)

    def _maybe_warm(self, _=None, force: bool = False) -> None:
        now = self.env._now
        if not self.warm and (force or now >= self.sc.run.warmup and self.next_id >= self.sc.run.warmup_jobs):
            self.snap, self.net_open, self.scale_open = self._edges()
            self.warm = True
            self.window_start = now

    def _sample(self, _=None) -> None:
        now = self.env._now
        busy = self.integ.busy
        self.samples.append((now, self.staging_count, self.central_count, self.waiting, sum(busy), self.ended,
                             *busy, *[s.active for s in self.scalers.values()]))
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
        _, runtime, python, k = item
        service = self.streams.service
        if runtime is None:
            runtime = max(0.0, self.runtimes[k]())
        if python is None:
            texts, cum = self.mixes[k]
            python = texts[0] if len(texts) == 1 else \
                texts[min(np.searchsorted(cum, service.random(), side="right"), len(texts) - 1)]
        fail_p = self.fail_ps[k]
        fails = fail_p > 0 and service.random() < fail_p   # drawn at arrival (CRN)
        files = self.catalogs[k].draw() if self.catalogs else ()
        jid = self.next_id
        self.next_id += 1
        if not self.warm:
            self._maybe_warm()
        self._submit(jid, 0, self.env._now, runtime, files, python, fails, k)
        self._schedule_next_arrival()   # after the submission: the run may end when this is None

    def _submit(self, logical: int, attempt: int, first_submit: float, runtime, files, python,
                fails: bool = False, cls: int = 0) -> None:
        now = self.env._now
        jid = self.next_attempt
        self.next_attempt += 1
        pool = self.pool_for(python)
        job = Job(self, jid, logical, attempt, first_submit, now, runtime, files, python, pool, self.warm)
        job.fails = fails
        job.cls = cls
        self.clients.assign(job)
        if attempt == 0:
            self.outstanding += 1
        if pool is None:
            job.sm = None
            self._finalize(job, "rejected")
            return
        if self.warm:
            self.arrived_window += 1
        self.integ.job_in(now)
        if self.tracer:
            self.tracer(now, "submit", job)
        agent = self.choose(pool, job, self.streams.policy, self.when_free)
        if agent is None:
            self.central[pool].append(job)
            self.central_count += 1
        else:
            self._assign(job, agent)

    # --- StageInFiles ---------------------------------------------------------------------------
    def _assign(self, job: Job, agent: Agent) -> None:
        job.agent = agent
        agent.load += 1
        if self.track_pools:
            self._touch(agent)
        job.stage_start = self.env._now
        self.staging_count += 1
        cost = self.cost_stage
        if cost:
            agent.rpc += cost
            self.rpc_bins[agent.gi].point(self.env._now, cost)
        self.staging.stage(job, agent)

    # --- RunJob and the agent's slots --------------------------------------------------------------
    def _runjob(self, job: Job) -> None:
        agent = job.agent
        self.staging_count -= 1
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
        self.clients.arm(job)

    def _start(self, job: Job) -> None:
        agent = job.agent
        job.sm.advance(Event.START)
        self.waiting -= 1
        now = self.env._now
        self.integ.busy_step(agent.gi, now, 1)
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

    def _ended(self, job: Job, outcome: str, ran: bool = True) -> None:
        agent = job.agent
        now = self.env._now
        if ran:                           # not a WAIT job cancelled (clients.py)
            self.integ.busy_step(agent.gi, now, -1)
            agent.running -= 1
        agent.load -= 1
        if self.track_pools:
            self._touch(agent)
        self.ended += 1
        if self.warm and self.window_end is None:
            self.ended_window += 1
        self.integ.job_out(now)
        job.end = now
        job.end_ev = None   # break the job <-> event cycle: a done job is freed at once, not by the GC
        if self.tracer:
            self.tracer(now, "end", job)
        # the client sees DONE at its first poll at or after the end (computed, not simulated),
        # one rpc_latency after it when it watches or cancelled the job
        seen, polls = self.clients.seen(job, now)
        job.polls = polls
        job.seen = seen
        if self.has_failures:
            self.at(seen - now, P_SEEN, self.failures.seen, (job, outcome))
        else:
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
        self.clients.finish(job)
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
        sc, names = self.sc, self.group_names
        span = max(self.window_end - self.window_start, 1e-12)
        rpc = {g: 0.0 for g in names}
        rpc_max = {g: 0.0 for g in names}
        for a in self.agents:
            rpc[a.group] += a.rpc
            rpc_max[a.group] = max(rpc_max[a.group], a.rpc)
        # an autoscaled group's capacity is its agents serving over the window, not a fixed count
        active = {names[gi]: self.scale_close[gi] - self.scale_open[gi] for gi in self.scalers}
        count = {g.name: (active[g.name] / span if g.name in active else g.count) for g in sc.agents}
        out = summarize(
            self.collector, window=(self.window_start, self.window_end), arrivals_in_window=self.arrived_window,
            ended_in_window=self.ended_window, in_system_area=self.close[0] - self.snap[0],
            group_busy={g: self.close[1][i] - self.snap[1][i] for i, g in enumerate(names)},
            group_capacity={g.name: count[g.name] * g.slots for g in sc.agents}, group_rpc=rpc,
            group_count=count, unfinished=self.outstanding, bytes_requested=self.staging.bytes_requested)
        for g in names:
            out[f"rpc_load_max.{g}"] = rpc_max[g] / span   # the busiest agent's RPC CPU share
        out.update(self.staging.metrics(self.net_open, self.net_close, span, self.agents, names, active))
        out.update(agent_hours(sc, self.scalers, self.env._now))
        for gi, scaler in self.scalers.items():
            out.update(scaler.metrics(active[names[gi]], span, self.env._now))
        for extra in (self.collector.bins, self.collector.by_class):
            if extra is not None:
                out.update(extra.metrics())
        out.update(self.clients.metrics(span))
        out["trace_skipped"] = self.arrivals.trace_stats.skipped_unknown_runtime
        out["little_identity_error"] = self.integ.identity_error(self.env._now)
        return out
