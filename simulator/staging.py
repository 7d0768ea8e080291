"""StageInFiles in the model: the per-agent content cache (AGT-STAGE-5) and transfers."""
from __future__ import annotations

import math
from typing import Callable, Protocol

import numpy as np

from simulator.clock import P_RUNJOB, P_TRANSFER, Call
from simulator.entities import Agent, Job
from simulator.network import Transfers


class Host(Protocol):
    """What staging needs from the simulation it is part of."""

    env: object
    at: Callable[..., Call]
    def _runjob(self, job: Job) -> None: ...


class Staging:
    """A job's files come from the agent's cache, from a fetch in flight there, or by a transfer.

    A file already cached on the agent, or being fetched there for another job, is not read
    again (a hit); the misses of one StageInFiles are one transfer. The call takes rpc_latency;
    a transfer's content is usable rpc_latency + source_latency after its bytes are in.
    """

    def __init__(self, host: Host, scenario, file_sizes: list[float], links: list[float] | None):
        net = scenario.network
        self.host = host
        self.env = host.env
        self.at = host.at
        self.runjob = host._runjob
        self.lat = scenario.clients.rpc_latency
        self.fetch_delay = scenario.clients.rpc_latency + net.source_latency   # request to usable content
        self.enabled = net.enabled
        self.use_cache = net.cache
        self.cache_capacity = net.cache_capacity
        self.lru = net.cache_capacity != math.inf
        self.file_sizes = file_sizes
        self.holders: dict[int, set] = {}     # file -> agents caching it (for cache_affinity)
        self.track_holders = False
        self.bytes_requested = 0.0
        self.transfers: Transfers | None = None
        self.link_rows: list[tuple] = []
        if net.enabled and links is not None:
            self.instant = [min(net.source_bandwidth, link) == math.inf for link in links]
            self.transfers = Transfers(host.clock, net.source_bandwidth, links)

    def rpc_only(self, job: Job) -> None:
        """Nothing to transfer: StageInFiles takes one RPC latency, RunJob another (one event)."""
        if self.lat:
            job.stage_end = self.env._now + self.lat
            self.at(2 * self.lat, P_RUNJOB, self.runjob, job)
        else:
            job.stage_end = self.env._now
            self.runjob(job)

    def stage(self, job: Job, agent: Agent) -> None:
        if not self.enabled or not job.files:
            self.rpc_only(job)
            return
        sizes, use_cache = self.file_sizes, self.use_cache
        cache, inflight = agent.cache, agent.inflight
        missed, miss_bytes = [], 0.0
        files = job.files if len(job.files) == 1 else dict.fromkeys(job.files)   # staged once (AGT-STAGE-1)
        for f in files:
            self.bytes_requested += sizes[f]
            if use_cache and f in cache:
                if self.lru:
                    cache[f] = cache.pop(f)      # LRU touch
                job.hits += 1
            elif use_cache and f in inflight:
                inflight[f].append(job)          # fetched once per agent (AGT-STAGE-5)
                job.hits += 1
                job.pending += 1
            else:
                job.misses += 1
                missed.append(f)
                miss_bytes += sizes[f]
                if use_cache:
                    inflight[f] = []
        job.missed = missed
        job.bytes = miss_bytes
        if missed:
            # The flow shares the links from the request on; the RPC and source latencies delay
            # the moment the content is usable (one event less per transfer than a delayed start).
            job.pending += 1
            if self.instant[agent.index] or miss_bytes <= 0:
                self._transfer_done(job)
            else:
                self.transfers.start(agent.index, miss_bytes, self._transfer_done, job)
        if job.pending == 0:
            self.rpc_only(job)     # every file cached: no transfer
        elif self.lat and not missed:     # waiting for files in flight; the RPC itself takes lat
            job.pending += 1
            self.at(self.lat, P_TRANSFER, self._part, job)

    def _transfer_done(self, job: Job) -> None:
        agent = job.agent
        if self.use_cache:
            holders = self.holders if self.track_holders else None
            for f in job.missed:
                size = self.file_sizes[f]
                agent.cache[f] = size
                agent.cache_used += size
                if holders is not None:
                    holders.setdefault(f, set()).add(agent.index)
                for waiter in agent.inflight.pop(f, ()):
                    self._part(waiter, self.fetch_delay)
            while self.lru and agent.cache_used > self.cache_capacity and agent.cache:
                old = next(iter(agent.cache))
                agent.cache_used -= agent.cache.pop(old)
                if holders is not None:
                    holders[old].discard(agent.index)
        self._part(job, self.fetch_delay)

    def _part(self, job: Job, extra: float = 0.0) -> None:
        job.pending -= 1
        if job.pending == 0:
            self._staged(job, extra)

    def _staged(self, job: Job, extra: float = 0.0) -> None:
        """StageInFiles returns `extra` from now; RunJob reaches the agent one latency later."""
        job.stage_end = self.env._now + extra
        delay = extra + self.lat
        if delay:
            self.at(delay, P_RUNJOB, self.runjob, job)
        else:
            self.runjob(job)

    def prefill(self, agents: list[Agent], catalogs, weights: list[float]) -> int:
        """Warm caches (run.warm_cache): every agent starts holding what the popularity model leaves
        in its cache, the most requested files first (weight x popularity), up to cache_capacity (a
        steady LRU cache holds mostly these: Che's approximation), or, unbounded, the files making
        99.9 % of the requests. The least requested go in first, so LRU evicts them first. Returns
        the number of files per agent."""
        if not self.enabled or not self.use_cache or not catalogs:
            return 0
        items = []
        for cat, w in zip(catalogs, weights):
            pdf = np.diff(np.concatenate(([0.0], cat.cdf)))
            items += [(w * p, cat.offset + i) for i, p in enumerate(pdf.tolist())]
        items.sort(reverse=True)
        total = sum(p for p, _ in items) or 1.0
        chosen, used, share = [], 0.0, 0.0
        for p, f in items:
            size = self.file_sizes[f]
            if used + size > self.cache_capacity:
                continue
            if self.cache_capacity == math.inf and share >= 0.999 * total:
                break
            chosen.append(f)
            used += size
            share += p
        base = {f: self.file_sizes[f] for f in reversed(chosen)}
        for a in agents:
            if a.off:
                continue
            a.cache = base.copy()
            a.cache_used = used
            if self.track_holders:
                for f in chosen:
                    self.holders.setdefault(f, set()).add(a.index)
        return len(chosen)

    def forget(self, agent: Agent) -> None:
        """An agent switched off (scale-in): its cache is gone with the machine."""
        if self.track_holders:
            for f in agent.cache:
                self.holders.get(f, set()).discard(agent.index)
        agent.cache.clear()
        agent.cache_used = 0.0

    # --- what the links and the source did over the statistics window ---------------------------------
    def snapshot(self) -> tuple[float, list[float], float] | None:
        t = self.transfers
        if t is None:
            return None
        total, per = t.moved()
        return total, per, t.saturated_time()

    def metrics(self, start, end, span: float, agents: list[Agent], groups: list[str],
                active_area: dict[str, float]) -> dict[str, float]:
        """Utilisation of the source (bytes read / what it could deliver) and of each agent's link,
        as the group's mean and its busiest agent, and the share of time the source was the limit."""
        t = self.transfers
        if t is None or start is None or end is None:
            return {}
        out = {"source_utilisation": (end[0] - start[0]) / (t.S * span) if t.S != math.inf else 0.0,
               "source_saturated": (end[2] - start[2]) / span}
        per: dict[str, list[float]] = {g: [] for g in groups}
        self.link_rows = []      # every agent's link: (agent, group, bytes in the window, utilisation)
        for a in agents:
            link = t.L[a.index]
            moved = end[1][a.index] - start[1][a.index]
            util = moved / (link * span) if link != math.inf else 0.0
            per[a.group].append(util)
            self.link_rows.append((a.index, a.group, moved, util))
        for g, utils in per.items():
            # an autoscaled group's links exist only while its agents do: divide by agents serving
            n = active_area.get(g, len(utils) * span) / span
            out[f"link_utilisation.{g}"] = sum(utils) / n if n > 0 else 0.0
            out[f"link_utilisation_max.{g}"] = max(utils) if utils else 0.0
        return out
