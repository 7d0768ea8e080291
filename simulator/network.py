"""Fluid model of file transfers: the source and each agent link shared max-min fairly."""
from __future__ import annotations

import heapq
import itertools
import math
from typing import Callable

from simulator.clock import P_TRANSFER, Clock


class Transfers:
    """Concurrent transfers from one source to many agents, with max-min fair rates.

    Every transfer to agent `a` crosses the source (capacity S, shared by all) and the agent's
    link (capacity L[a], shared by that agent's transfers). Max-min fairness gives every transfer
    of agent `a` the same rate r[a] = min(L[a] / n[a], x), where the water level x solves
    sum_a min(L[a], n[a] * x) = S (x = inf when the links alone are the bottleneck).

    Each agent keeps a virtual clock V[a]: the bytes delivered so far to each of its transfers
    since an arbitrary origin. A transfer of `size` bytes started at V0 ends when V[a] reaches
    V0 + size, so one heap per agent and one pending completion event per agent suffice.
    Cost per start or end: O(log n) while the source is not a bottleneck; O(A log A) over the
    A agents with transfers when it is (the level x changes for all of them).
    """

    def __init__(self, clock: Clock, source_bandwidth: float, link_bandwidth: list[float]):
        self.clock = clock
        self.S = source_bandwidth
        self.L = link_bandwidth
        n = len(link_bandwidth)
        self.n = [0] * n
        self.V = [0.0] * n
        self.last = [0.0] * n
        self.rate = [0.0] * n
        self.heaps: list[list] = [[] for _ in range(n)]
        self.pending: list = [None] * n
        self.active: dict[int, None] = {}
        self.sum_links = 0.0       # sum of L[a] over agents with transfers
        self.level = math.inf
        self._seq = itertools.count()
        self.bytes_done = 0.0
        self.delivered = [0.0] * n     # bytes completed per agent (its link's utilisation)
        self.sat_time = 0.0            # time the source was the bottleneck (a finite water level)
        self._sat_since: float | None = None

    def start(self, agent: int, size: float, done: Callable[[object], None], arg: object) -> None:
        """Start a transfer of `size` bytes (> 0) to `agent`; call done(arg) when it completes."""
        self._advance(agent)
        heapq.heappush(self.heaps[agent], (self.V[agent] + size, next(self._seq), size, done, arg))
        if self.n[agent] == 0:
            self.active[agent] = None
            self.sum_links += self.L[agent]
        self.n[agent] += 1
        self._rebalance(agent)

    def moved(self) -> tuple[float, list[float]]:
        """Bytes delivered so far, in all and per agent, counting the part of transfers in flight
        (under saturation much of the traffic is in transfers that have not finished yet)."""
        per = list(self.delivered)
        now = self.clock.now
        for a in self.active:
            V = self.V[a] + self.rate[a] * (now - self.last[a])   # not stored: keeps the run's arithmetic
            per[a] += sum(size - (end - V) for end, _, size, _, _ in self.heaps[a])
        total = self.bytes_done + sum(per[a] - self.delivered[a] for a in self.active)
        return total, per

    def saturated_time(self) -> float:
        """Total time so far during which the source limited some transfer (x < inf)."""
        since = self._sat_since
        return self.sat_time + (self.clock.now - since if since is not None else 0.0)

    # --- internals ----------------------------------------------------------------------------
    def _advance(self, a: int) -> None:
        now = self.clock.now
        if self.n[a]:
            self.V[a] += self.rate[a] * (now - self.last[a])
        self.last[a] = now

    def _complete(self, a: int) -> None:
        self.pending[a] = None
        self._advance(a)
        heap, V = self.heaps[a], self.V[a]
        finished = []
        while heap and heap[0][0] <= V + 1e-9 * max(1.0, heap[0][0]):
            finished.append(heapq.heappop(heap))
        self.n[a] -= len(finished)
        if self.n[a] == 0:
            del self.active[a]
            self.sum_links -= self.L[a]
            if not self.active:
                self.sum_links = 0.0   # no float drift across idle periods
        self._rebalance(a)
        for _, _, size, done, arg in finished:
            self.bytes_done += size
            self.delivered[a] += size
            done(arg)

    def _reschedule(self, a: int) -> None:
        old = self.pending[a]
        if old is not None:
            old.cancel()
            self.pending[a] = None
        heap = self.heaps[a]
        if heap:
            delay = max(0.0, (heap[0][0] - self.V[a]) / self.rate[a])
            self.pending[a] = self.clock.at(delay, P_TRANSFER, self._complete, a)

    def _set_rate(self, a: int, rate: float, force: bool = False) -> None:
        """Change agent a's per-transfer rate (V[a] is advanced first at the old rate)."""
        if not self.n[a]:
            return
        if force or rate != self.rate[a]:
            self._advance(a)
            self.rate[a] = rate
            self._reschedule(a)

    def _rebalance(self, changed: int) -> None:
        old_level = self.level
        if self.sum_links <= self.S * (1 + 1e-12):
            self.level = math.inf
        else:
            self.level = self._water_level()
        if (old_level == math.inf) != (self.level == math.inf):
            if self.level == math.inf:
                self.sat_time += self.clock.now - self._sat_since
                self._sat_since = None
            else:
                self._sat_since = self.clock.now
        if old_level == math.inf and self.level == math.inf:
            if self.n[changed]:
                self._set_rate(changed, self.L[changed] / self.n[changed], force=True)
            return
        for a in self.active:
            self._set_rate(a, min(self.L[a] / self.n[a], self.level), force=a == changed)

    def _water_level(self) -> float:
        """x with sum_a min(L[a], n[a] x) = S, by filling agents in order of L[a]/n[a]."""
        items = sorted((self.L[a] / self.n[a], self.n[a], self.L[a]) for a in self.active)
        remaining, flows = self.S, sum(self.n[a] for a in self.active)
        for per_flow, n, link in items:
            if per_flow * flows >= remaining:
                return remaining / flows
            remaining -= link
            flows -= n
        return math.inf
