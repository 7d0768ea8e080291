"""Memory grows with agents and jobs in flight, not with jobs done (records streamed or dropped)."""
from __future__ import annotations

import tracemalloc

from simulator.engine import Simulation
from simulator.scenario import Scenario


def traced_bytes(jobs: int) -> tuple[int, int]:
    """(memory still held by the simulation after its run, peak during the run)."""
    sc = Scenario.from_dict({
        "agents": [{"count": 50, "slots": 2}],
        "network": {"link_bandwidth": "1GB/s", "source_bandwidth": "10GB/s"},
        "workload": {"rate": 50.0, "runtime": {"dist": "exponential", "mean": 1.0},
                     "files": {"catalog": 20, "count": 2, "size": "1MB"}},
        "clients": {"poll_interval": 1.0, "poll_backoff": 1.5, "rpc_cost_poll": 0.001},
        "run": {"jobs": jobs, "seed": 1},
    })
    sim = Simulation(sc, 0)          # no sink: nothing kept per done job
    # (20 files: the caches, which grow with agents x files, are full early in both runs)
    tracemalloc.start()
    try:
        sim.run()
        return tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_done_jobs():
    (held_small, peak_small), (held_large, peak_large) = traced_bytes(5_000), traced_bytes(45_000)
    # 40,000 more jobs at the same load: keeping even 50 bytes per done job would add 2 MB.
    # What may differ: the longest queue seen, list capacities and the statistics buffers (at
    # most 4096 floats per histogram); the caches are full in both runs (20 files)
    assert held_large < held_small + 1_000_000, (held_small, held_large)
    assert peak_large < peak_small + 1_000_000, (peak_small, peak_large)


def test_memory_of_a_profiled_autoscaled_run_does_not_grow_with_done_jobs():
    """The time-varying model keeps nothing per done job either: a daily profile (repeating every
    100 s), time bins, an autoscaled group and two job classes; 8x the jobs, same memory."""
    def held(periods: int) -> tuple[int, int]:
        sc = Scenario.from_dict({
            "agents": [{"count": 5, "slots": 2, "price_per_hour": 1.0,
                        "autoscale": {"min": 2, "max": 40, "interval": 5, "provisioning_delay": 5, "cooldown": 5}}],
            "network": {"link_bandwidth": "1GB/s", "source_bandwidth": "10GB/s"},
            "workload": {"classes": [
                {"profile": {"points": [[0, 5], [50, 40]], "repeat": 100}, "runtime": {"dist": "exponential", "mean": 1.0},
                 "files": {"catalog": 20, "size": "1MB"}},
                {"rate": 2.0, "runtime": 3.0, "files": {"catalog": 10, "size": "1MB"}}]},
            "clients": {"poll_interval": 1.0, "poll_backoff": 1.5},
            "run": {"duration": 100 * periods, "seed": 1, "bin": 10},
        })
        sim = Simulation(sc, 0)
        tracemalloc.start()
        try:
            sim.run()
            return tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    (held_small, peak_small), (held_large, peak_large) = held(3), held(24)
    # about 7,400 jobs against 59,000: 50 bytes per done job would be 2.6 MB more
    assert held_large < held_small + 1_000_000, (held_small, held_large)
    assert peak_large < peak_small + 1_000_000, (peak_small, peak_large)
