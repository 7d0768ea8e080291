"""StageInFiles in the model: the per-agent content cache (AGT-STAGE-5) and transfers."""
from __future__ import annotations

from simulator.clock import P_RUNJOB, P_TRANSFER
from simulator.entities import Agent, Job


class Staging:
    """Mixin of Simulation: a job's files are staged from the cache, an in-flight fetch, or a transfer.

    A file already cached on the agent, or being fetched there for another job, is not read
    again (a hit); the misses of one StageInFiles are one transfer. The call takes rpc_latency;
    a transfer's content is usable rpc_latency + source_latency after its bytes are in.
    """

    def _stage_rpc_only(self, job: Job) -> None:
        """Nothing to transfer: StageInFiles takes one RPC latency, RunJob another (one event)."""
        if self.lat:
            job.stage_end = self.env._now + self.lat
            self.at(2 * self.lat, P_RUNJOB, self._runjob, job)
        else:
            job.stage_end = self.env._now
            self._runjob(job)

    def _stage_files(self, job: Job, agent: Agent) -> None:
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
            self._stage_rpc_only(job)     # every file cached: no transfer
        elif self.lat and not missed:     # waiting for files in flight; the RPC itself takes lat
            job.pending += 1
            self.at(self.lat, P_TRANSFER, self._stage_part, job)

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
                    self._stage_part(waiter, self.fetch_delay)
            while self.lru and agent.cache_used > self.cache_capacity and agent.cache:
                old = next(iter(agent.cache))
                agent.cache_used -= agent.cache.pop(old)
                if holders is not None:
                    holders[old].discard(agent.index)
        self._stage_part(job, self.fetch_delay)

    def _stage_part(self, job: Job, extra: float = 0.0) -> None:
        job.pending -= 1
        if job.pending == 0:
            self._staged(job, extra)

    def _staged(self, job: Job, extra: float = 0.0) -> None:
        """StageInFiles returns `extra` from now; RunJob reaches the agent one latency later."""
        job.stage_end = self.env._now + extra
        delay = extra + self.lat
        if delay:
            self.at(delay, P_RUNJOB, self._runjob, job)
        else:
            self._runjob(job)
