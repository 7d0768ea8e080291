"""Simulator speed: the full model (staging, polling, 1,000 agents) against a bare SimPy M/M/c loop.

    .venv/bin/python bench/sim_bench.py              # 1,000,000 jobs each (about a minute)
    .venv/bin/python bench/sim_bench.py --jobs 100000

Each measurement runs in its own child process (so its peak RSS is its own): the bare SimPy
M/M/c loop (a process per job, simpy.Resource), the full model with the same job count, and the
full model with half the jobs (memory must not grow with jobs done). Speeds are jobs per
CPU second of the child (other processes on shared cores do not count); wall times are shown
too. Prints one summary line last.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGENTS, SLOTS, RATE, MEAN_RUNTIME = 1000, 2, 70.0, 20.0   # utilisation 0.7


def full_scenario(jobs: int):
    from simulator.scenario import Scenario
    return Scenario.from_dict({
        "agents": [{"name": "fleet", "count": AGENTS, "slots": SLOTS, "python": ["3.11.9", "3.12.4"]}],
        "network": {"source_bandwidth": "10GB/s", "source_latency": "5ms", "link_bandwidth": "1Gbit/s",
                    "cache": True, "cache_capacity": "2GB"},
        "workload": {"rate": RATE, "runtime": {"dist": "exponential", "mean": MEAN_RUNTIME},
                     "files": {"catalog": 10000, "count": 1, "popularity": "zipf", "zipf_s": 1.1,
                               "size": {"dist": "lognormal", "mean": "10MB", "sigma": 1.0}}},
        "clients": {"policy": "power_of_two", "poll_interval": "1s", "poll_backoff": 1.5,
                    "poll_max_interval": "30s", "rpc_latency": "1ms", "rpc_cost_poll": "0.2ms",
                    "rpc_cost_stage": "1ms", "rpc_cost_run": "1ms"},
        "run": {"jobs": jobs, "seed": 1},
    })


def run_full(jobs: int) -> dict:
    from simulator.engine import Simulation
    sim = Simulation(full_scenario(jobs), 0)     # no per-job sink: records are not kept
    m = sim.run()
    return {"polls_per_job": m["polls_per_job"], "cache_hit_ratio": m["cache_hit_ratio"],
            "utilisation": m["utilisation.fleet"], "events": next(sim.env._eid)}   # events scheduled


def run_bare(jobs: int) -> dict:
    """The textbook SimPy M/M/c: a source process, a process per job, one Resource with c slots."""
    import random
    import simpy
    rng = random.Random(1)
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=AGENTS * SLOTS)
    done = [0]

    def job(env):
        with servers.request() as req:
            yield req
            yield env.timeout(rng.expovariate(1.0 / MEAN_RUNTIME))
        done[0] += 1

    def source(env):
        for _ in range(jobs):
            yield env.timeout(rng.expovariate(RATE))
            env.process(job(env))

    env.process(source(env))
    env.run()
    assert done[0] == jobs
    return {}


def child(kind: str, jobs: int) -> None:
    import simpy  # noqa: F401  (imports are not part of the timing)
    import simulator.engine  # noqa: F401
    fn = run_full if kind == "full" else run_bare
    cpu0, wall0 = time.process_time(), time.perf_counter()
    extra = fn(jobs)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"kind": kind, "jobs": jobs, "cpu": cpu, "wall": wall, "peak_mb": peak_kb / 1024, **extra}))


def measure(kind: str, jobs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--jobs", str(jobs)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs per measurement (default 1,000,000)")
    parser.add_argument("--child", choices=("full", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs < 1000:
        parser.error(f"--jobs {args.jobs}: at least 1000")
    if args.child:
        child(args.child, args.jobs)
        return 0
    n = args.jobs
    bare = measure("bare", n)
    full = measure("full", n)
    small = measure("full", n // 2)   # caches (bounded by cache_capacity) are full by then
    for r in (bare, full, small):
        print(f"{r['kind']:>4} {r['jobs']:>9,} jobs: {r['jobs'] / r['cpu']:>8,.0f} jobs/CPU-s, "
              f"{r['cpu']:6.1f} CPU s, {r['wall']:6.1f} wall s, peak RSS {r['peak_mb']:6.1f} MB")
    print(f"full model: {full['polls_per_job']:.2f} polls/job, cache hit ratio {full['cache_hit_ratio']:.3f}, "
          f"utilisation {full['utilisation']:.3f}, {full['events'] / n:.2f} SimPy events/job")
    ratio = (n / full["cpu"]) / (n / bare["cpu"])
    ok = ratio >= 0.5 and full["cpu"] < 60
    print(f"sim_bench: full model {n / full['cpu']:,.0f} jobs/s vs bare SimPy M/M/c {n / bare['cpu']:,.0f} jobs/s, "
          f"ratio {ratio:.2f} (target >= 0.5); {n:,} jobs over {AGENTS:,} agents in {full['cpu']:.1f} CPU s "
          f"({full['wall']:.1f} wall s; target < 60 s); peak RSS {full['peak_mb']:.0f} MB at {n:,} jobs vs "
          f"{small['peak_mb']:.0f} MB at {n // 2:,}; {'OK' if ok else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
