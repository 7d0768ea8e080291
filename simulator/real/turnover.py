"""Slot turnover: how long a busy slot stays idle between one job's last statement and the next's first."""
from __future__ import annotations

import heapq
import random
import statistics
import threading
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
            "p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max_s": ordered[-1],
            "gaps_s": all_gaps}


class Alongside:
    """Measures the slot turnover on a separate probe agent, batch after batch, while a run goes on.

    The probe's jobs share the machine with the run, so its figure reflects the machine's load
    during the run (a control measurement beside the experiment, never the run's own jobs).
    `start()`, then `stop()` returns the figures of every batch finished by then (or no `gaps`);
    a batch still running is abandoned (the fleet's stop ends its jobs).
    """

    def __init__(self, target: tuple[str, int], source: Path, tmp: Path, sleep: float, probe: str, rounds: int = 3):
        self.target, self.source, self.tmp, self.sleep, self.probe, self.rounds = target, source, tmp, sleep, probe, rounds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._gaps: list[float] = []
        self._errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="turnover-alongside", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                out = measure_turnover([self.target], self.source, self.tmp, self.rounds, self.sleep, self.probe)
            except Exception as exc:  # noqa: BLE001 - a failed batch is reported, the run goes on
                with self._lock:
                    if not self._stop.is_set():
                        self._errors.append(repr(exc))
                return
            with self._lock:
                if not self._stop.is_set():
                    self._gaps += out["gaps_s"]

    def start(self) -> "Alongside":
        self._thread.start()
        return self

    def stop(self) -> dict:
        with self._lock:
            self._stop.set()
            g, errors = sorted(self._gaps), list(self._errors)
        if not g:
            return {"errors": errors}
        return {"gaps": len(g), "mean_s": statistics.fmean(g), "p50_s": statistics.median(g),
                "p95_s": g[min(len(g) - 1, int(0.95 * len(g)))], "sleep_s": self.sleep, "errors": errors}
