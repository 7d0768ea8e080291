"""The entities of a simulation: its random streams, agents and job attempts."""
from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

import numpy as np

NAN = math.nan


@dataclass
class Streams:
    """The explicit random streams of one replication (no global seed anywhere).

    Each concern has its own stream, and every per-job draw (runtime, python requirement, whether
    it will fail, its files) is made at the job's arrival, in arrival order. So arrivals and job
    attributes are identical across policies, agent counts, network settings and failures
    (common random numbers), which sharpens comparisons in sweeps.
    """

    arrivals: random.Random
    service: random.Random      # runtimes, python mix, job failures: drawn at arrival
    policy: random.Random
    failures: random.Random     # agent up and down times
    files: np.random.Generator  # which files a job reads
    catalog: random.Random | None = None   # file sizes and per-job file counts
    key: tuple[int, int] = (0, 0)          # (seed, replication): the root of the job classes' streams

    @classmethod
    def from_seed(cls, seed: int, replication: int = 0) -> "Streams":
        ss = np.random.SeedSequence([seed, replication])
        kids = ss.spawn(6)
        r = [random.Random(int(k.generate_state(1, dtype=np.uint64)[0])) for k in kids[:4] + kids[5:]]
        return cls(r[0], r[1], r[2], r[3], np.random.default_rng(kids[4]), r[4], (seed, replication))

    def for_class(self, k: int) -> tuple[random.Random, random.Random, np.random.Generator]:
        """Arrivals, catalog and file streams of job class k >= 1 (class 0 uses the streams above,
        so a one-class workload draws exactly as before classes existed)."""
        kids = np.random.SeedSequence([*self.key, 1000 + k]).spawn(3)
        a, c = (random.Random(int(x.generate_state(1, dtype=np.uint64)[0])) for x in kids[:2])
        return a, c, np.random.default_rng(kids[2])


class Agent:
    """One simulated agent: slots, a FIFO of WAIT jobs (AGT-SCHED-3), a content cache, RPC load."""

    __slots__ = ("index", "group", "gi", "slots", "speed", "load", "running", "queue", "up", "repair_at",
                 "cache", "cache_used", "inflight", "runset", "pools", "rpc", "polls", "off")

    def __init__(self, index: int, group: str, gi: int, slots: int, speed: float):
        self.index, self.group, self.gi, self.slots, self.speed = index, group, gi, slots, speed
        self.load = 0          # jobs assigned to it: staging + WAIT + RUN
        self.running = 0
        self.queue: deque = deque()
        self.up = True
        self.repair_at = 0.0
        self.cache: dict[int, float] = {}      # file -> size, in LRU order
        self.cache_used = 0.0
        self.inflight: dict[int, list] = {}    # file being fetched -> jobs waiting for it
        self.runset: set = set()
        self.pools: list = []
        self.rpc = 0.0
        self.polls = 0
        self.off = False       # switched off by the autoscaler (not serving, not paid)

    def cached_files(self) -> list[int]:
        return list(self.cache)

    def __repr__(self) -> str:
        return f"Agent({self.index}, {self.group}, load={self.load}/{self.slots}, up={self.up})"


class Job:
    """One attempt of a client's job, from submission to the client seeing DONE."""

    __slots__ = ("id", "logical", "attempt", "first_submit", "submit", "runtime", "files", "python", "pool",
                 "agent", "stage_start", "stage_end", "run_submit", "start", "end", "seen", "polls", "bytes",
                 "hits", "misses", "missed", "pending", "sm", "end_ev", "warm", "sim", "fails", "cls",
                 "watch", "cancel_at", "cancel_sent", "saved", "reopen")

    def __init__(self, sim, jid, logical, attempt, first_submit, now, runtime, files, python, pool, warm):
        self.id, self.logical, self.attempt = jid, logical, attempt
        self.first_submit, self.submit, self.runtime = first_submit, now, runtime
        self.files, self.python, self.pool, self.warm, self.sim = files, python, pool, warm, sim
        self.agent = None
        self.stage_start = self.stage_end = self.run_submit = self.start = self.end = self.seen = NAN
        self.polls = self.hits = self.misses = self.pending = 0
        self.bytes = 0.0
        self.missed = ()
        self.sm = None
        self.end_ev = None
        self.fails = False
        self.cls = 0           # job class index
        self.watch = False     # its client watches (WatchJobs) instead of polling
        self.cancel_at = NAN   # when its client cancels it if not DONE (clients.ClientModel)
        self.cancel_sent = False
        self.saved = 0.0       # slot-seconds its cancel freed
        self.reopen = 0        # watch streams opened again after an agent failure
