"""Simulator speed: the full model (staging, polling, 1,000 agents) against a bare SimPy M/M/c loop.

    .venv/bin/python bench/sim_bench.py              # 1,000,000 jobs each (about a minute)
    .venv/bin/python bench/sim_bench.py --jobs 100000
    .venv/bin/python bench/sim_bench.py --day 1.0       # a simulated day, autoscaled fleet (about 10M jobs)
    .venv/bin/python bench/sim_bench.py --day 0.1       # the same day compressed to 2.4 h (about 1M jobs)

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
    from simulator import warmup
    from simulator.engine import Simulation
    from simulator.workload import expected_span
    sc = full_scenario(jobs)
    sim = Simulation(sc, 0)     # no per-job sink: records are not kept
    sim.collector.series = warmup.WaitSeries(expected_span(sc))   # as every run has (steady-state checks)
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


def day_scenario(fraction: float):
    """A day of a sinusoidal load from 30 to 200 jobs/s (mean 115: about 10M jobs), compressed to
    `fraction` of 24 h with the same rates (so fraction x 10M jobs), on a fleet autoscaled between
    200 and 2,000 agents x 4 slots on utilisation, with staging, caches, polling and RPC costs."""
    import math
    from simulator.scenario import Scenario
    period = 86400.0 * fraction
    points = [[period * k / 48, 115.0 - 85.0 * math.cos(2 * math.pi * k / 48)] for k in range(48)]
    return Scenario.from_dict({
        "agents": [{"name": "fleet", "count": 300, "slots": 4, "python": ["3.11.9", "3.12.4"], "price_per_hour": 0.2,
                    "autoscale": {"min": 200, "max": 2000, "metric": "utilisation", "target": 0.7,
                                  "interval": "30s", "provisioning_delay": "2min", "cooldown": "2min"}}],
        "network": {"source_bandwidth": "100GB/s", "source_latency": "5ms", "link_bandwidth": "1Gbit/s",
                    "cache": True, "cache_capacity": "2GB"},
        "workload": {"profile": {"points": points, "repeat": period},
                     "runtime": {"dist": "exponential", "mean": 25.0},
                     "files": {"catalog": 10000, "count": 1, "popularity": "zipf", "zipf_s": 1.1,
                               "size": {"dist": "lognormal", "mean": "10MB", "sigma": 1.0}}},
        "clients": {"policy": "power_of_two", "poll_interval": "1s", "poll_backoff": 1.5,
                    "poll_max_interval": "30s", "rpc_latency": "1ms", "rpc_cost_poll": "0.2ms",
                    "rpc_cost_stage": "1ms", "rpc_cost_run": "1ms"},
        "run": {"duration": period, "seed": 1, "bin": period / 24, "bin_period": period},
    })


def run_day(fraction: float) -> dict:
    from simulator.engine import Simulation
    sim = Simulation(day_scenario(fraction), 0)
    m = sim.run()
    return {"jobs": m["jobs_completed"], "agent_hours": m["agent_hours"], "peak_agents": m["agents_peak.fleet"],
            "mean_agents": m["agents_mean.fleet"], "wait_p95": m["wait_p95"], "utilisation": m["utilisation.fleet"],
            "worst_hour_p95": max(v for k, v in m.items() if k.endswith(".wait_p95") and k.startswith("bin."))}


def day(fraction: float) -> int:
    load0 = open("/proc/loadavg").read().split()[:3]
    out = subprocess.run([sys.executable, __file__, "--child", "day", "--fraction", str(fraction)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    load1 = open("/proc/loadavg").read().split()[:3]
    print(f"sim_bench day: {fraction:g} of a day, {r['jobs']:,} jobs in {r['cpu']:.1f} CPU s ({r['wall']:.1f} wall s; "
          f"{r['jobs'] / r['cpu']:,.0f} jobs/CPU-s), peak RSS {r['peak_mb']:.0f} MB; fleet peak {r['peak_agents']} agents, "
          f"mean {r['mean_agents']:.0f}, {r['agent_hours']:,.0f} agent-hours, utilisation {r['utilisation']:.2f}, "
          f"wait p95 {r['wait_p95']:.3g} s (worst bin {r['worst_hour_p95']:.3g} s); load average {' '.join(load0)} "
          f"before, {' '.join(load1)} after")
    return 0


def child(kind: str, jobs: int, fraction: float = 1.0) -> None:
    import simpy  # noqa: F401  (imports are not part of the timing)
    import simulator.engine  # noqa: F401
    fn = run_full if kind == "full" else run_bare
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if kind == "day":
        extra = run_day(fraction)
        jobs = extra.pop("jobs")
    else:
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
    parser.add_argument("--child", choices=("full", "bare", "day"), help=argparse.SUPPRESS)
    parser.add_argument("--day", type=float, default=None, metavar="FRACTION",
                        help="instead: a simulated day (1.0) or a compressed fraction of one, autoscaled fleet")
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.day is not None and not 0 < args.day <= 1:
        parser.error(f"--day {args.day}: a fraction of a day in (0, 1]")
    if args.day is not None:
        return day(args.day)
    if args.jobs < 1000:
        parser.error(f"--jobs {args.jobs}: at least 1000")
    if args.child:
        child(args.child, args.jobs, args.fraction)
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
    ok = ratio >= 0.8 and full["cpu"] < 60
    print(f"sim_bench: full model {n / full['cpu']:,.0f} jobs/s vs bare SimPy M/M/c {n / bare['cpu']:,.0f} jobs/s, "
          f"ratio {ratio:.2f} (target >= 0.8); {n:,} jobs over {AGENTS:,} agents in {full['cpu']:.1f} CPU s "
          f"({full['wall']:.1f} wall s; target < 60 s); peak RSS {full['peak_mb']:.0f} MB at {n:,} jobs vs "
          f"{small['peak_mb']:.0f} MB at {n // 2:,}; {'OK' if ok else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
