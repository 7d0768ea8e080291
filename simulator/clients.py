"""What a client does after RunJob: learn that its job is DONE by polling or by watching (the
AgentExtensions WatchJobs stream, PROTOCOL-EXT.md AGT-EXT-7), and cancel it after a timeout
(CancelJob, AGT-EXT-5/6). A component of `engine.Simulation`: it tells the engine when the client
knows a job is DONE, cancels jobs, charges the agent's CPU for these calls and keeps their
statistics (`metrics()`).

Watching sends no polls: the stream is opened with RunJob's answer, its first event gives the
current state (WAIT or RUN), then RUN if it started later, then DONE, which the client receives
one `rpc_latency` after the end. A cancel is a `KILL` of `protos.states` (the reference agent
records a cancel the same way): a WAIT job leaves the queue and never starts, a RUN job's slot
is freed at once; the client knows DONE one `rpc_latency` later (CancelJob's answer).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from protos.states import Event, JobState
from simulator import schema
from simulator.checks import Table
from simulator.clock import P_SEEN, Call
from simulator.distributions import Dist
from simulator.policies import BUILTIN
from simulator.polling import PollSchedule
from simulator.schema import Derived, key
from simulator.stats import LogHistogram


def _policy(t: Table, name: str, values: dict) -> str | Callable:
    policy = t.raw(name, "least_loaded")
    if not BUILTIN.is_spec(policy):
        raise t.fail(name, f"must be one of {', '.join(BUILTIN)} or 'module:function' of your own")
    return policy


def _poll_cost(factor: float, shown: str) -> Derived:
    return Derived(lambda v: v["rpc_cost_poll"] * factor, shown)


@dataclass(frozen=True)
class Clients:
    """How clients choose agents, learn that a job is DONE (poll or watch), cancel, resubmit, and
    what their RPCs cost the agent."""

    policy: str | Callable = key("custom", doc="how a client picks an agent", read=_policy, choices=BUILTIN,
                                 shown="`least_loaded`")
    dispatch: str = key("choice", "on_arrival", "hand a job to an agent at once, or keep a client-side FIFO and "
                        "hand out when a slot frees", choices=("on_arrival", "when_free"))
    wait: str = key("choice", "poll", "how a client learns DONE: polling, or a WatchJobs stream (AGT-EXT-7) that "
                    "tells it one `rpc_latency` after the end and sends no polls", choices=("poll", "watch"))
    watch_share: float = key("number", Derived(lambda v: 1.0 if v["wait"] == "watch" else 0.0,
                                               "1 if `wait = \"watch\"`, else 0"),
                             "the share of jobs whose client watches (the others poll), drawn per job")
    poll_interval: float = key("duration", 1.0, "the first poll's delay after RunJob; 0 = no polling")
    poll_backoff: float = key("number", 1.0, "each interval is the previous one times this", minimum=1.0)
    poll_max_interval: float = key("duration", Derived(lambda v: max(v["poll_interval"], 30.0)
                                                       if v["poll_interval"] > 0 else 0.0, "max(30s, interval)"),
                                   "the intervals' cap")
    poll_restart: bool = key("bool", False, "start the intervals again from `poll_interval` at the poll that "
                             "first sees the job RUN (as `protos.client` does)")
    rpc_latency: float = key("duration", 0.0, "per RPC (StageInFiles, RunJob, CancelJob; a watch event)")
    rpc_cost_poll: float = key("duration", 0.0, "agent CPU seconds per poll")
    rpc_cost_stage: float = key("duration", 0.0, "agent CPU seconds per StageInFiles")
    rpc_cost_run: float = key("duration", 0.0, "agent CPU seconds per RunJob")
    rpc_cost_watch: float = key("duration", _poll_cost(1.0, "`rpc_cost_poll`"),
                                "agent CPU seconds per WatchJobs call opened (a unary call's work)")
    rpc_cost_event: float = key("duration", _poll_cost(0.5, "`rpc_cost_poll` / 2"),
                                "agent CPU seconds per event sent on a stream (a message on an open stream: no "
                                "new call, no request to read)")
    rpc_cost_stream: float = key("number", 0.0, "agent CPU seconds per second of an open stream (idle streams "
                                 "cost memory, not CPU: HTTP/2 keepalive is per connection)")
    rpc_cost_cancel: float = key("duration", _poll_cost(1.0, "`rpc_cost_poll`"), "agent CPU seconds per CancelJob")
    cancel_share: float = key("number", 0.0, "the share of jobs whose client cancels them (CancelJob, AGT-EXT-5) "
                              "when they are not DONE `cancel_after` after RunJob, drawn per job")
    cancel_after: Dist | None = key("dist", None, "the client's timeout, from RunJob (a distribution)")
    resubmit_interrupted: bool = key("bool", False, "resubmit jobs interrupted by a failure")
    max_resubmits: int = key("int", 3, "at most this many times", minimum=0)


@schema.check(Clients)
def _check_clients(v: dict, t: Table, ctx: dict) -> None:
    if v["poll_interval"] > 0 and v["poll_max_interval"] < v["poll_interval"]:
        raise t.fail("poll_max_interval", "must be >= poll_interval")
    for name in ("watch_share", "cancel_share"):
        if v[name] > 1:
            raise t.fail(name, "must be a share between 0 and 1")
    if v["cancel_share"] > 0 and v["cancel_after"] is None:
        raise t.fail("cancel_after", "is required when cancel_share > 0 (the client's timeout, e.g. '30min')")
    if t.has("cancel_after") and v["cancel_share"] == 0:
        raise t.fail("cancel_share", "must be > 0 for cancel_after to matter (the share of jobs cancelled)")


class Host(Protocol):
    """What the client model needs from the simulation it is part of."""

    env: object
    at: Callable[..., Call]
    waiting: int
    has_failures: bool
    rpc_bins: list
    def _ended(self, job, outcome: str, ran: bool = True) -> None: ...
    def _refill(self, agent) -> None: ...


class ClientModel:
    """Polling and watching clients, and their cancels, for one replication."""

    def __init__(self, host: Host, scenario, streams):
        self.host = host
        c = self.cfg = scenario.clients
        self.polls = PollSchedule(c.poll_interval, c.poll_backoff, c.poll_max_interval)
        self.restart = c.poll_restart and not self.polls.off
        self.latency = c.rpc_latency
        self.share = c.watch_share
        self.cancel_share = c.cancel_share
        rng = None
        if 0 < self.share < 1 or self.cancel_share > 0:
            # its own stream: the other streams, hence the jobs themselves, are unchanged (CRN)
            seed = np.random.SeedSequence([*streams.key, 2000]).generate_state(1, dtype=np.uint64)[0]
            rng = random.Random(int(seed))
        self.rng = rng
        self.timeout = c.cancel_after.sampler(rng) if c.cancel_after is not None and rng is not None else None
        self.notice = LogHistogram()
        self.polls_sent = self.events = self.streams = self.cancels = 0
        self.cpu_watch = self.cpu_cancel = 0.0
        self.cancelled = {"wait": 0, "run": 0}
        self.saved = {"wait": 0.0, "run": 0.0}      # slot-seconds a cancel freed

    # --- per job ------------------------------------------------------------------------------
    def assign(self, job) -> None:
        """At submission: whether this job's client watches, and its cancel timeout (or None)."""
        share = self.share
        job.watch = share >= 1 or (share > 0 and self.rng.random() < share)
        if self.timeout is not None and (self.cancel_share >= 1 or self.rng.random() < self.cancel_share):
            job.cancel_at = max(0.0, self.timeout())      # relative until RunJob arms it

    def arm(self, job) -> None:
        """At RunJob: the client's timeout starts; it cancels then if it does not know DONE."""
        after = job.cancel_at
        if after == after:
            job.cancel_at = self.host.env._now + after
            self.host.at(after, P_SEEN, self._cancel, job)

    def _cancel(self, job) -> None:
        host = self.host
        if job.end == job.end:      # ended first: the client's notice accounts for its cancel
            return
        agent = job.agent
        now = host.env._now
        if not agent.up:            # CancelJob fails while the agent is down: again at the repair
            host.at(max(0.0, agent.repair_at - now), P_SEEN, self._cancel, job)
            return
        job.cancel_sent = True
        if job.sm.state is JobState.WAIT:
            agent.queue.remove(job)
            job.sm.advance(Event.KILL)
            host.waiting -= 1
            job.saved = job.runtime / agent.speed
            self.count_cancel(job, "wait")
            host._ended(job, "cancelled", ran=False)
        else:
            job.saved = job.start + job.runtime / agent.speed - now
            job.end_ev.cancel()
            job.sm.advance(Event.KILL)
            if host.has_failures:
                agent.runset.discard(job)
            self.count_cancel(job, "run")
            host._ended(job, "cancelled")
        host._refill(agent)

    def count_cancel(self, job, where: str) -> None:
        if job.warm:
            self.cancelled[where] += 1
            self.saved[where] += job.saved

    def poll(self, job, t: float) -> tuple[float, int]:
        """(first poll at or after t, polls up to it). With poll_restart the backoff starts again
        from poll_interval at the poll that first sees the job RUN, as protos.client does."""
        origin = job.run_submit
        if self.restart and job.start > origin:
            p1, n1 = self.polls.first_at_or_after(origin, job.start)
            if p1 < t:
                p2, n2 = self.polls.first_at_or_after(p1, t)
                return p2, n1 + n2
        return self.polls.first_at_or_after(origin, t)

    def seen(self, job, now: float) -> tuple[float, int]:
        """When the client knows the job (ended now) is DONE, and the polls it sent until then."""
        if job.cancel_sent:                     # CancelJob's answer says DONE
            return now + self.latency, self._polls_before(job, now)
        if job.watch:
            return now + self.latency, 0
        seen, polls = self.poll(job, now)
        cancel_at = job.cancel_at
        if cancel_at < seen and cancel_at + self.latency < seen:   # its timeout comes first
            job.cancel_sent = True              # a cancel of a DONE job changes nothing (AGT-EXT-5)
            return cancel_at + self.latency, self._polls_before(job, cancel_at)
        return seen, polls

    def seen_after(self, job, t: float) -> tuple[float, int]:
        """The agent was down at the job's end: the client learns DONE after the repair at t
        (its polls fail until then; a watch stream broke and is opened again)."""
        if job.watch:
            job.reopen += 1
            return t + self.latency, 0
        return self.poll(job, t)

    def _polls_before(self, job, t: float) -> int:
        if job.watch or self.polls.off:
            return 0
        p, n = self.poll(job, t)
        return max(0, n - 1 if p >= t else n)

    def finish(self, job) -> None:
        """The client knows the attempt is DONE: charge the agent, count, record the notice delay."""
        agent = job.agent
        if agent is None:
            return
        c = self.cfg
        cost = cancel = 0.0
        if job.watch:
            opens = 1 + job.reopen
            events = opens + 1 + (job.start > job.run_submit)      # current state(s), RUN, DONE
            cost = opens * c.rpc_cost_watch + events * c.rpc_cost_event + (job.end - job.run_submit) * c.rpc_cost_stream
        if job.cancel_sent:
            cancel = c.rpc_cost_cancel
        if cost or cancel:
            agent.rpc += cost + cancel
            self.host.rpc_bins[agent.gi].spread(job.run_submit, job.seen, cost + cancel)
        if not job.warm:
            return
        self.polls_sent += job.polls
        if job.watch:
            self.events += events
            self.streams += opens
            self.cpu_watch += cost
        if job.cancel_sent:
            self.cancels += 1
            self.cpu_cancel += cancel
        h = self.notice
        h.add(job.seen - job.end)
        if len(h._buf) >= h.BUFFER:
            h._flush()

    def metrics(self, span: float) -> dict[str, float]:
        """Counts and CPU over the statistics window's jobs; notice = DONE known - DONE."""
        h, cut = self.notice, self.cancelled
        out = {"polls_sent": self.polls_sent, "watch_events_sent": self.events, "watch_streams_opened": self.streams,
               "cancels_sent": self.cancels, "jobs_cancelled": cut["wait"] + cut["run"],
               "jobs_cancelled.wait": cut["wait"], "jobs_cancelled.run": cut["run"],
               "rpc_cpu.poll": self.polls_sent * self.cfg.rpc_cost_poll, "rpc_cpu.watch": self.cpu_watch,
               "rpc_cpu.cancel": self.cpu_cancel}
        out["rpc_cpu"] = out["rpc_cpu.poll"] + self.cpu_watch + self.cpu_cancel
        out["rpc_cpu_per_s"] = out["rpc_cpu"] / span if span > 0 else math.nan
        out["slot_hours_saved.wait"] = self.saved["wait"] / 3600
        out["slot_hours_saved.run"] = self.saved["run"] / 3600
        out["slot_hours_saved"] = (self.saved["wait"] + self.saved["run"]) / 3600
        out["notice_mean"] = h.mean()
        for q in (50, 95, 99):
            out[f"notice_p{q}"] = h.quantile(q / 100)
        out["notice_max"] = h.maximum if h.count() else math.nan
        return out
