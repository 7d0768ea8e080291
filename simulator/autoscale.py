"""Autoscaling of agent groups: the policy settings, the built-in and user policies, and the scaler."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from simulator import schema
from simulator.checks import ScenarioError, Table
from simulator.clock import P_AGENT
from simulator.registry import Registry, load
from simulator.schema import key


@dataclass
class GroupState:
    """What a policy sees at a decision (a user policy gets this and returns the desired size)."""

    time: float
    active: int           # agents serving (up)
    provisioning: int     # requested, not yet serving
    busy: int             # busy slots of the group
    queued: int           # jobs waiting: at the client and in WAIT on the group's agents
    slots: int            # slots per agent
    minimum: int
    maximum: int
    target: float


@dataclass(frozen=True)
class Autoscaler:
    """A built-in autoscaling policy: `fn(state) -> desired size`, its default target and the
    largest target that makes sense (a utilisation is at most 1)."""

    fn: Callable[[GroupState], int]
    target: float
    max_target: float = math.inf


def utilisation_policy(s: GroupState) -> int:
    """Enough agents that the work present (busy + queued jobs) fills `target` of their slots."""
    return math.ceil((s.busy + s.queued) / (s.slots * s.target) - 1e-9)


def queue_policy(s: GroupState) -> int:
    """One agent more while more than `target` jobs per agent wait; one fewer when none wait and
    the busy slots fit in one agent fewer."""
    if s.queued > s.target * s.active:
        return s.active + s.provisioning + 1
    if s.queued == 0 and s.busy <= (s.active - 1) * s.slots:
        return s.active - 1
    return s.active + s.provisioning


AUTOSCALERS: Registry[Autoscaler] = Registry("autoscaling metric")
AUTOSCALERS.register("utilisation", Autoscaler(utilisation_policy, 0.7, 1.0),
                     "size = ceil((busy + queued) / (slots x target)), target in (0, 1]")
AUTOSCALERS.register("queue", Autoscaler(queue_policy, 1.0),
                     "one more agent while more than `target` jobs per agent wait, one fewer when none "
                     "wait and the busy slots fit in one agent fewer")
METRICS = tuple(AUTOSCALERS)


def _policy(t: Table, name: str, values: dict) -> str | Callable | None:
    policy = t.raw(name, None)
    if policy is not None and not callable(policy) and not (isinstance(policy, str) and ":" in policy):
        raise t.fail(name, "must be 'module:function' (a function of a GroupState returning the desired size)")
    return policy


@dataclass(frozen=True)
class Autoscale:
    """[agents.autoscale]: every `interval` the policy names a desired size in [minimum, maximum];
    new agents serve after `provisioning_delay` (and are paid from the request); after an action
    no other for `cooldown`; scale-in only removes idle agents, so it never kills a running job."""

    minimum: int = key("int", 1, "the smallest size of the group",
                       toml="min", minimum=1)
    maximum: int = key("int", doc="the largest size; `count` is the initial size, in min..max", toml="max", minimum=1)
    metric: str = key("choice", "utilisation", "what the built-in policy follows", choices=AUTOSCALERS)
    target: float = key("number", schema.Derived(lambda v: AUTOSCALERS[v["metric"]].target, "0.7 (queue: 1.0)"),
                        "the metric's target", positive=True)
    interval: float = key("duration", 30.0, "between decisions", positive=True)
    provisioning_delay: float = key("duration", 120.0, "a new agent serves after it (paid from the request)",
                                    shown="2min")
    cooldown: float = key("duration", 300.0, "no action within it after the last", shown="5min")
    step: int | None = key("int", None, "at most this many agents per action", minimum=1, shown="unlimited")
    policy: str | Callable | None = key(
        "custom", None, "`\"module:function\"`: `fn(state) -> desired size`, `state` a `GroupState` (time, "
        'active, provisioning, busy, queued, slots, minimum, maximum, target)', read=_policy, shown="built-in")


@schema.check(Autoscale)
def _check(v: dict, t: Table, ctx: dict) -> None:
    if v["maximum"] < v["minimum"]:
        raise t.fail("max", f"must be >= min ({v['minimum']})")
    count = ctx["count"]
    if not v["minimum"] <= count <= v["maximum"]:
        raise ScenarioError(t.prefix.rsplit(".", 1)[0] + ".count", count,
                            f"the initial size must lie in autoscale min..max ({v['minimum']}..{v['maximum']})")
    if v["target"] > AUTOSCALERS[v["metric"]].max_target:
        raise t.fail("target", f"a {v['metric']} target must be in (0, {AUTOSCALERS[v['metric']].max_target:g}]")


def resolve(auto: Autoscale) -> Callable[[GroupState], int]:
    if auto.policy is None:
        return AUTOSCALERS[auto.metric].fn
    if callable(auto.policy):
        return auto.policy
    try:
        return load(auto.policy)
    except ValueError as exc:
        raise ValueError(f"autoscale.policy = {exc}") from None


class Scaler:
    """Component of a Simulation scaling one group. Agents up to `maximum` exist from the start;
    those beyond the current size are off (not chosen, not paid). Keeps the integrals of agents
    serving and agents paid (serving + provisioning) for utilisation and agent-hours."""

    def __init__(self, sim, gi: int, auto: Autoscale, count: int):
        self.sim, self.gi, self.cfg = sim, gi, auto
        self.members = [a for a in sim.agents if a.gi == gi]
        self.slots = self.members[0].slots
        for a in self.members[count:]:
            a.up = False
            a.off = True
        self.active = count
        self.provisioning = 0
        self.last_action = -math.inf
        self.fn = resolve(auto)
        self.t = 0.0
        self.active_area = self.paid_area = 0.0
        self.peak = count

    def start(self) -> None:
        self.sim.at(self.cfg.interval, P_AGENT, self.tick, None)

    def integrate(self) -> None:
        now = self.sim.env._now
        dt = now - self.t
        self.active_area += self.active * dt
        self.paid_area += (self.active + self.provisioning) * dt
        self.t = now

    def state(self) -> GroupState:
        sim = self.sim
        queued = sim.central_count + sum(len(a.queue) for a in self.members if not a.off)
        return GroupState(sim.env._now, self.active, self.provisioning, sim.integ.busy[self.gi], queued, self.slots,
                          self.cfg.minimum, self.cfg.maximum, self.cfg.target)

    def tick(self, _=None) -> None:
        sim, cfg = self.sim, self.cfg
        if sim.finished.triggered:
            return
        now = sim.env._now
        state = self.state()
        desired = self.fn(state)
        if isinstance(desired, bool) or not isinstance(desired, (int, float)) or desired != desired:
            raise ValueError(f"autoscale policy {self.fn!r} returned {desired!r}, not a number of agents")
        desired = max(cfg.minimum, min(cfg.maximum, int(math.ceil(desired))))
        current = self.active + self.provisioning
        if now - self.last_action >= cfg.cooldown and desired != current:
            step = cfg.step or cfg.maximum
            if desired > current:
                self._scale_out(min(desired - current, step))
            elif desired < self.active:
                self._scale_in(min(self.active - desired, step))
        sim.at(cfg.interval, P_AGENT, self.tick, None)

    def _scale_out(self, n: int) -> None:
        self.integrate()
        picked = [a for a in self.members if a.off][:n]
        for a in picked:
            a.off = False       # requested: paid from now, serving after the delay
            self.sim.at(self.cfg.provisioning_delay, P_AGENT, self._online, a)
        self.provisioning += len(picked)
        self.last_action = self.sim.env._now

    def _online(self, agent) -> None:
        self.integrate()
        self.provisioning -= 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        agent.up = True
        for pool in agent.pools:
            pool.add(agent)
        self.sim.agent_up(agent)

    def _scale_in(self, n: int) -> None:
        """Switch off up to n idle agents (highest index first): a running or queued job is never lost."""
        idle = [a for a in reversed(self.members) if a.up and not a.off and a.load == 0][:n]
        if not idle:
            return
        self.integrate()
        staging = self.sim.staging
        for a in idle:
            a.up = False
            a.off = True
            for pool in a.pools:
                pool.remove(a)
            staging.forget(a)    # a new machine starts with an empty cache
        self.active -= len(idle)
        self.last_action = self.sim.env._now

    def metrics(self, window_area: float, span: float, end: float) -> dict[str, float]:
        name = self.members[0].group
        return {f"agents_mean.{name}": window_area / span if span > 0 else math.nan,
                f"agents_peak.{name}": self.peak}


def agent_hours(scenario, scalers: dict[int, Scaler], now: float) -> dict[str, float]:
    """Agent-hours per group over the whole run [0, now] (an autoscaled group's paid agents: serving
    or being provisioned), and their cost where the group has a price per hour."""
    out: dict[str, float] = {}
    total, priced = 0.0, False
    for gi, g in enumerate(scenario.agents):
        scaler = scalers.get(gi)
        if scaler is not None:
            scaler.integrate()
            hours = scaler.paid_area / 3600.0
        else:
            hours = g.count * now / 3600.0
        out[f"agent_hours.{g.name}"] = hours
        if g.price_per_hour is not None:
            out[f"cost.{g.name}"] = hours * g.price_per_hour
            total += hours * g.price_per_hour
            priced = True
    out["agent_hours"] = sum(v for k, v in out.items() if k.startswith("agent_hours."))
    if priced:
        out["cost"] = total
    return out
