"""Memory grows with agents and jobs in flight, not with jobs done (records streamed or dropped)."""
from __future__ import annotations

import tracemalloc

from simulator.engine import Simulation
from simulator.scenario import Scenario


def peak_bytes(jobs: int) -> int:
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
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_done_jobs():
    small, large = peak_bytes(10_000), peak_bytes(40_000)
    # 4x the jobs (same load, same number in flight): the peak must not grow anywhere near 4x;
    # the statistics buffers (at most 4096 floats per histogram) are the only thing that grows
    assert large < 1.5 * small, (small, large)
