"""How a client chooses an agent: the built-in policies and the hook for a policy of your own."""
from __future__ import annotations

import heapq
import random
from typing import Callable, Sequence

from simulator.registry import Registry

# A user policy: fn(job, agents, rng) -> one of `agents` (or its index in `agents`).
# `agents` are the eligible agents that are up, each with .index, .group (name), .slots,
# .load (jobs assigned: staging + WAIT + RUN), .running, .cached_files() ; `job` has .files,
# .python, .runtime, .submit. Return None to leave the job queued at the client (when_free).
UserPolicy = Callable[[object, Sequence[object], random.Random], object]


class Pool:
    """The agents eligible for one python requirement, with a lazy least-loaded heap.

    Load of an agent is load/slots, ties broken by the lowest agent index, so every policy
    is deterministic for a given RNG. The heap holds (key, index) entries; stale entries are
    dropped when they reach the top, and the heap is rebuilt when it grows past 4x the pool,
    so its size stays proportional to the number of agents, not of jobs.
    """

    def __init__(self, agents: list, track: bool = True):
        self.agents = agents
        self.members = {a.index for a in agents}
        self.rr = 0
        self.track = track      # keep the heap up to date (only policies that read it need it)
        self.heap: list = []
        self.rebuild()

    def rebuild(self) -> None:
        self.heap = [(a.load / a.slots, a.index, a) for a in self.agents if a.up]
        heapq.heapify(self.heap)

    def touched(self, agent) -> None:
        """Record a change of load or up state of `agent`."""
        if self.track and agent.up:
            heapq.heappush(self.heap, (agent.load / agent.slots, agent.index, agent))
            if len(self.heap) > 4 * len(self.agents) + 64:
                self.rebuild()

    def add(self, agent) -> None:
        """An agent switched on by the autoscaler joins the pool (those switched off are not in it)."""
        if agent.index not in self.members:
            self.agents.append(agent)
            self.members.add(agent.index)
        self.touched(agent)

    def remove(self, agent) -> None:
        if agent.index in self.members:
            self.agents.remove(agent)
            self.members.discard(agent.index)

    def least_loaded(self):
        if not self.track:   # a policy without the heap asked for a fallback: scan
            up = [a for a in self.agents if a.up]
            return min(up, key=_key) if up else None
        heap = self.heap
        while heap:
            key, _, agent = heap[0]
            if agent.up and key == agent.load / agent.slots:
                return agent
            heapq.heappop(heap)
        return None

    def up_agents(self, free_only: bool) -> list:
        if free_only:
            return [a for a in self.agents if a.up and a.load < a.slots]
        return [a for a in self.agents if a.up]


def _key(agent) -> tuple[float, int]:
    return (agent.load / agent.slots, agent.index)


def least_loaded(pool: Pool, job, rng: random.Random, free_only: bool):
    agent = pool.least_loaded()
    if agent is None or (free_only and agent.load >= agent.slots):
        return None
    return agent


def random_choice(pool: Pool, job, rng: random.Random, free_only: bool):
    agents = pool.agents
    if not free_only:
        n = len(agents)
        for _ in range(8):
            a = agents[int(rng.random() * n)]
            if a.up:
                return a
    cands = pool.up_agents(free_only)
    return cands[rng.randrange(len(cands))] if cands else None


def round_robin(pool: Pool, job, rng: random.Random, free_only: bool):
    agents, n = pool.agents, len(pool.agents)
    for step in range(n):
        a = agents[(pool.rr + step) % n]
        if a.up and (not free_only or a.load < a.slots):
            pool.rr = (pool.rr + step + 1) % n
            return a
    return None


def power_of_two(pool: Pool, job, rng: random.Random, free_only: bool):
    agents = pool.agents if not free_only else pool.up_agents(True)
    if free_only and not agents:
        return None
    if len(agents) == 1:
        a = agents[0]
        return a if a.up else None
    n = len(agents)
    rand = rng.random               # int(random() * n): uniform on 0..n-1, far cheaper than randrange
    for _ in range(8):
        i = int(rand() * n)
        j = int(rand() * (n - 1))
        j += j >= i                   # two distinct agents, uniformly
        a, b = agents[i], agents[j]
        if a.up and b.up:
            return a if _key(a) <= _key(b) else b
        if a.up or b.up:
            return a if a.up else b
    return least_loaded(pool, job, rng, free_only)


def cache_affinity(pool: Pool, job, rng: random.Random, free_only: bool):
    """Among agents with a free slot, the one holding the most bytes of the job's files (ties: the
    least loaded); when no holder has a free slot, the least-loaded agent. A holder is never sent
    more work than it has slots: pure affinity would pile the jobs of a popular file onto its
    few holders while the rest of the fleet idles."""
    holders = job.sim.staging.holders
    sizes = job.sim.staging.file_sizes
    score: dict = {}
    for f in set(job.files):
        for idx in holders.get(f, ()):
            if idx in pool.members:
                score[idx] = score.get(idx, 0.0) + sizes[f]
    best = None
    agents = job.sim.agents
    for idx, s in score.items():
        a = agents[idx]
        if not a.up or a.load >= a.slots:
            continue
        key = (-s, a.load / a.slots, idx)
        if best is None or key < best[0]:
            best = (key, a)
    if best is not None:
        return best[1]
    return least_loaded(pool, job, rng, free_only)


# Policies that read the least-loaded heap on every choice; the others skip its upkeep.
least_loaded.needs_heap = True      # type: ignore[attr-defined]
cache_affinity.needs_heap = True    # type: ignore[attr-defined]

BUILTIN: Registry[Callable] = Registry("dispatch policy", user_spec=True)
BUILTIN.register("random", random_choice, "an agent drawn uniformly")
BUILTIN.register("round_robin", round_robin, "the agents in turn")
BUILTIN.register("least_loaded", least_loaded, "the lowest load (O(log n) heap)")
BUILTIN.register("power_of_two", power_of_two, "the less loaded of two drawn")
BUILTIN.register("cache_affinity", cache_affinity, "the free agent holding most of the job's bytes")


def resolve(spec: str | Callable) -> Callable:
    """A built-in policy by name, or a user policy given as a callable or 'module:function'."""
    if callable(spec):
        return _wrap_user(spec)
    if spec in BUILTIN:
        return BUILTIN[spec]
    try:
        fn = BUILTIN.resolve(spec)
    except (ValueError, LookupError) as exc:
        raise ValueError(f"clients.policy = {exc}") from None
    return _wrap_user(fn)


def _wrap_user(fn: UserPolicy) -> Callable:
    def choose(pool: Pool, job, rng: random.Random, free_only: bool):
        cands = pool.up_agents(free_only)
        if not cands:
            return None
        picked = fn(job, cands, rng)
        if picked is None:
            return None
        if isinstance(picked, int) and not isinstance(picked, bool):
            if not 0 <= picked < len(cands):
                raise ValueError(f"user policy {fn!r} returned index {picked} outside 0..{len(cands) - 1}")
            return cands[picked]
        if getattr(picked, "index", None) not in pool.members or not picked.up:
            raise ValueError(f"user policy {fn!r} returned {picked!r}, not one of the eligible agents")
        return picked
    choose.user = fn  # type: ignore[attr-defined]
    return choose
