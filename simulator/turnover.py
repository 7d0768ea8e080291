"""Slot turnover: how long a busy slot stays idle between one job's last statement and the next's first."""
from __future__ import annotations

import heapq
import random
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from protos.client import AgentClient
from protos.states import JobState


def _submit_all(address: str, entries: list[str]) -> list[str]:
    jobs = []
    with grpc.insecure_channel(address) as channel:
        client = AgentClient(channel, timeout=60)
        for entry in entries:
            job = str(uuid.uuid4())
            client.stage_in(job, [entry])
            client.run(job, [entry])
            jobs.append(job)
        end = time.monotonic() + 120 + 10 * len(entries)
        for job in jobs:
            while client.status(job) is not JobState.DONE:
                if time.monotonic() > end:
                    raise TimeoutError(f"turnover job {job} on {address} not DONE in time")
                time.sleep(0.05)
    return jobs


def gaps(intervals: list[tuple[float, float]]) -> tuple[int, list[float]]:
    """(slots seen, gaps) for one agent's jobs given as (first, last) statement times, FIFO.

    The slots are the largest number of jobs seen running at once. Taking jobs in order of their
    first statement, each job after the first `slots` ones took the slot that freed first: its gap
    is its first statement minus the earliest last statement among the jobs then holding slots.
    """
    intervals = sorted(intervals)
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    slots = running = 0
    for _, step in events:
        running += step
        slots = max(slots, running)
    holding = [b for _, b in intervals[:slots]]
    heapq.heapify(holding)
    out = []
    for a, b in intervals[slots:]:
        out.append(a - heapq.heappop(holding))
        heapq.heappush(holding, b)
    return slots, out


def measure_turnover(targets: list[tuple[str, int]], source: Path, tmp: Path, rounds: int, sleep: float,
                     probe: str) -> dict:
    """Run rounds x slots jobs on every target at once (a busy fleet, like a loaded run); return the
    mean and p95 of the slot gaps, the slots seen per target and the jobs run.

    Runtimes are spread uniformly over [0.5, 1.5] x `sleep` (a fixed sequence) so that slots free
    one at a time as in a run with random arrivals, not all at once; choose `sleep` near the
    workload's mean runtime so that jobs start about as often as in the run.
    """
    rng = random.Random(1)
    plans = []
    for t, (address, slots) in enumerate(targets):
        entries, stamps = [], []
        for k in range(rounds * slots):
            entry, stamp = str(uuid.uuid4()), tmp / f"turnover-{t}-{k}"
            (source / entry).write_text(probe.format(start=str(stamp) + ".start", end=str(stamp) + ".end",
                                                     sleep=round(sleep * rng.uniform(0.5, 1.5), 4)))
            entries.append(entry)
            stamps.append(stamp)
        plans.append((address, entries, stamps))
    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        list(pool.map(lambda p: _submit_all(p[0], p[1]), plans))
    all_gaps, seen = [], []
    for _, _, stamps in plans:
        intervals = [(float(Path(str(s) + ".start").read_text()), float(Path(str(s) + ".end").read_text()))
                     for s in stamps]
        slots, g = gaps(intervals)
        seen.append(slots)
        all_gaps += g
    if not all_gaps:
        raise ValueError("turnover: no slot was reused (rounds must be >= 2)")
    ordered = sorted(all_gaps)
    return {"rounds": rounds, "sleep_s": sleep, "targets": len(targets), "slots_seen": seen,
            "gaps": len(all_gaps), "mean_s": statistics.fmean(all_gaps), "p50_s": statistics.median(all_gaps),
            "p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max_s": ordered[-1]}
