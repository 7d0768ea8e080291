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
