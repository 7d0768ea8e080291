"""Replay one scenario for real (a fleet of reference agents) and in the simulator, on one paired plan."""
from __future__ import annotations

import csv
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from protos import validation
from simulator.real import calibrate as cal_mod
from simulator.real import replay_report
from simulator.real.calibrate import Calibration
from simulator.engine import Simulation
from simulator.polling import PollSchedule
from simulator.real.realrun import Driver, PlannedJob, RealResult
from simulator.scenario import Scenario
from simulator.real.turnover import Alongside

POLICIES = ("round_robin", "random", "least_loaded")
MAX_SOURCE_BYTES = 2e9


class ReplayError(ValueError):
    """A scenario replay cannot run as given; the message names the key and why."""


@dataclass
class Plan:
    """The paired job sequence (arrivals from 0, runtimes, files, python) and the catalog's sizes."""

    jobs: list[PlannedJob]
    file_sizes: list[float]


def check(sc: Scenario) -> None:
    """Refuse what a real replay cannot reproduce, naming the key."""
    c = sc.clients
    policy = c.policy if isinstance(c.policy, str) else "(a function)"
    if policy not in POLICIES:
        raise ReplayError(f"clients.policy = {policy!r}: replay supports {', '.join(POLICIES)}")
    if c.dispatch != "on_arrival":
        raise ReplayError(f"clients.dispatch = {c.dispatch!r}: replay supports 'on_arrival' only")
    if c.poll_interval <= 0:
        raise ReplayError("clients.poll_interval = 0: a real client must poll; give an interval > 0")
    for g in sc.agents:
        if g.failures is not None:
            raise ReplayError(f"agents[{g.name}].failures: replay does not kill agents; remove the table")
        if g.speed != 1.0:
            raise ReplayError(f"agents[{g.name}].speed = {g.speed:g}: real jobs sleep their runtime; use 1")
    if sc.workload.fail_probability > 0:
        raise ReplayError(f"workload.fail_probability = {sc.workload.fail_probability:g}: replay jobs all succeed")
    here = local_version()
    for text, _ in sc.workload.python:
        if validation.choose_interpreter([validation.parse_python_version(text)], [here]) is None:
            raise ReplayError(f"workload.python = {text!r}: the local agents run Python {here} only")


def _with(data: dict, **tables) -> dict:
    import copy
    out = copy.deepcopy(data)
    for name, values in tables.items():
        out.setdefault(name, {}).update(values)
    return out


def make_plan(sc: Scenario, max_jobs: int = 20000) -> Plan:
    """Run the scenario once in the simulator and record what arrived: times, runtimes, files, python."""
    seen: dict[int, tuple] = {}

    def tracer(now, kind, job):
        if kind == "submit" and job.attempt == 0:
            seen[job.logical] = (now, job.runtime, tuple(job.files), job.python)

    sim = Simulation(sc, 0, tracer=tracer)
    sim.run()
    if not seen:
        raise ReplayError("the scenario produced no jobs")
    if len(seen) > max_jobs:
        raise ReplayError(f"the scenario produces {len(seen)} jobs; replay runs at most {max_jobs} (set run.jobs)")
    origin = min(v[0] for v in seen.values())
    jobs = [PlannedJob(i, t - origin, r, f, py, None) for i, (t, r, f, py) in sorted(seen.items())]
    sizes = list(sim.file_sizes)
    used = sum(sizes[f] for f in {f for j in jobs for f in j.files})
    if used > MAX_SOURCE_BYTES:
        raise ReplayError(f"workload.files: the plan's files total {used / 1e9:.1f} GB; replay writes them to a "
                          f"local source and allows {MAX_SOURCE_BYTES / 1e9:g} GB (smaller size or catalog)")
    return Plan(jobs, sizes)


def sim_scenario(sc: Scenario, cal: Calibration, plan: Plan, trace: Path) -> Scenario:
    """The calibrated scenario fed by the plan as a CSV trace, with each runtime + the slot overhead."""
    with open(trace, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["submit", "runtime", "python"])
        for j in plan.jobs:
            w.writerow([repr(j.submit), repr(j.runtime + cal.service_overhead), j.python])
    data = cal_mod.merge(sc.data, cal)
    if isinstance(data.get("network"), dict) and data["network"].get("enabled", True):
        data["network"]["link_bandwidth"] = "inf"     # local agents: the source is on this machine, no link
    workload = {k: v for k, v in data["workload"].items() if k not in ("rate", "runtime", "time_scale")}
    workload.update(arrivals="csv", trace=str(trace.resolve()), runtime="trace")
    data["workload"] = workload
    data["run"] = {k: v for k, v in data["run"].items() if k not in ("duration", "jobs")}
    data["run"].update(jobs=len(plan.jobs), replications=1, drain=True)
    return Scenario.from_dict(data, sc.base_dir)


def simulate(sc: Scenario, cal: Calibration, plan: Plan, trace: Path) -> list[dict]:
    """Per-job times of the calibrated simulation: start = RUN (the slot start + spawn delay), end =
    DONE at the agent, first/last = the job's first and last statements as a witness would see them."""
    scs = sim_scenario(sc, cal, plan, trace)
    records, files = [], {}

    def tracer(now, kind, job):
        if kind == "submit":
            files[job.logical] = tuple(job.files)

    Simulation(scs, 0, sink=records.append, tracer=tracer).run()
    for j in plan.jobs:
        if files.get(j.index) != j.files:
            raise ReplayError(f"pairing failed: job {j.index} drew files {files.get(j.index)} in the calibrated "
                              f"run but {j.files} in the plan (the engine's random streams changed order)")
    out = []
    for r in sorted(records, key=lambda r: r.logical):
        out.append({"index": r.logical, "agent": r.agent, "submit": r.submit, "run_submit": r.run_submit,
                    "start": r.start + cal.spawn_delay, "end": r.end, "first": r.start + cal.launch_delay,
                    "last": r.end - cal.done_delay, "done_seen": r.done_seen, "polls": r.polls})
    return out


def local_version() -> str:
    return "{}.{}.{}".format(*sys.version_info[:3])


def with_fleet(sc: Scenario, agents: int, slots: int) -> Scenario:
    """The scenario with its agent groups replaced by `agents` local agents of `slots` slots each."""
    data = dict(sc.data)
    data["agents"] = [{"name": "local", "count": agents, "slots": slots, "python": [local_version()]}]
    return Scenario.from_dict(data, sc.base_dir)


def layout(sc: Scenario) -> list[tuple[str, int]]:
    return [(g.name, g.slots) for g in sc.agents for _ in range(g.count)]


def run_real(sc: Scenario, plan: Plan, addresses: list[str], source: Path, witness: Path, state_dirs: list[Path],
             workers: int = 16, timeout: float | None = None) -> RealResult:
    """Drive the plan against the agents at `addresses`; RUN and DONE times come from their journals."""
    c = sc.clients
    slots = [s for _, s in layout(sc)]
    policy = "least_loaded" if c.policy == "least_loaded" else "planned"
    span = plan.jobs[-1].submit
    driver = Driver(plan.jobs, addresses, slots, plan.file_sizes, source, witness,
                    PollSchedule(c.poll_interval, c.poll_backoff, c.poll_max_interval), policy=policy,
                    workers=workers, timeout=timeout or max(120.0, span + sum(j.runtime for j in plan.jobs)))
    driver.prepare()
    result = driver.run()
    by_id = {r.job: r for r in result.jobs}
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=len(state_dirs) or 1) as pool:
        journals = list(pool.map(read_journal, state_dirs))
    for rows in journals:
        for row in rows:
            r = by_id.get(row["job"])
            if r is not None:
                r.start = row["started"] - result.t0 if row.get("started") is not None else math.nan
                r.end = row["ended"] - result.t0 if row.get("ended") is not None else math.nan
    return result


def read_journal(state_dir: Path) -> list[dict]:
    """The agent's jobs as its operator sees them (`reference-agent jobs --json`): started, ended, ..."""
    proc = subprocess.run([sys.executable, "-m", "reference_agent", "jobs", "--json", "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ReplayError(f"reading the journal in {state_dir} failed: {proc.stderr.strip()[:300]}")
    return json.loads(proc.stdout or "[]")


def replay(scenario: Scenario | str | Path, out: str | Path, *, calibration: Calibration | None = None,
           quick_calibration: bool = False, workers: int = 16, work: Path | None = None,
           progress=print) -> dict:
    """Run `scenario` for real and simulated; write the table, JSON, plot and per-job CSVs to `out`."""
    from simulator.real.fleet import Fleet
    sc = scenario if isinstance(scenario, Scenario) else Scenario.from_toml(scenario)
    check(sc)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="replay-", dir=work) as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "source"
        plan = make_plan(sc)   # calibration keys change no random stream: simulate() checks the files job by job
        probe_slots = layout(sc)[0][1]
        with Fleet(layout(sc) + [("probe", probe_slots)], source, tmp / "agents") as everything:
            fleet, probe = everything.members[:-1], everything.members[-1]
            progress(f"fleet: {len(fleet)} reference agents, slots {[m.slots for m in fleet]}, "
                     f"and one probe agent ({probe_slots} slots) for the calibration alongside the run")
            runtime = min(2.0, max(0.3, statistics.fmean(j.runtime for j in plan.jobs)))
            label = "agent-sim calibrate (given to agent-sim replay --calibration)"
            if calibration is None:
                label = "agent-sim replay (calibration before the run)"
                settings = cal_mod.Settings.quick() if quick_calibration else cal_mod.Settings()
                # slot turnover measured with jobs about as long as the workload's: launches as frequent
                settings.turnover_sleep = runtime
                calibration = cal_mod.measure(fleet[0].address, source, settings, work=tmp,
                                              fleet=[(m.address, m.slots) for m in fleet])
                progress(f"calibrated against agent 0 (turnover on all): launch {calibration.launch_delay * 1e3:.1f} ms, "
                         f"done delay {calibration.done_delay * 1e3:.1f} ms, turnover {calibration.turnover * 1e3:.1f} ms, "
                         f"poll {calibration.poll_rtt * 1e3:.2f} ms")
            calibration.write(out / "calibrated.toml", label)
            sim = simulate(sc, calibration, plan, out / "trace.csv")
            plan.jobs = [replace(j, agent=s["agent"]) for j, s in zip(plan.jobs, sim)]
            progress(f"plan: {len(plan.jobs)} jobs over {plan.jobs[-1].submit:.1f} s; simulated; running for real")
            (tmp / "alongside").mkdir()
            side = Alongside((probe.address, probe.slots), source, tmp / "alongside", runtime, cal_mod.PROBE).start()
            real = run_real(sc, plan, [m.address for m in fleet], source, tmp / "witness",
                            [m.state_dir for m in fleet], workers=workers)
            along = side.stop()
    real_rows = [asdict(r) for r in real.jobs]
    report = replay_report.compare(real_rows, sim, warmup=sc.run.warmup, warmup_jobs=sc.run.warmup_jobs)
    report["diagnostics"] = diag = diagnostics(real_rows, plan, calibration)
    report["attribution"] = attribution(sc, calibration, plan, real_rows, diag, out)
    report["alongside"] = alongside(sc, calibration, plan, real_rows, along, out)
    report.update(scenario=sc.data, jobs=len(plan.jobs), calibration=calibration.to_dict(),
                  client={"lateness_mean_s": real.lateness_mean, "lateness_max_s": real.lateness_max,
                          "errors": real.errors[:20], "error_count": len(real.errors), "unfinished": real.unfinished},
                  machine={"host": platform.node(), "load_average_after": list(_loadavg()),
                           "load_average_calibration": calibration.load_average},
                  pairing="one plan: the same arrival times, runtimes, files and agent choices for both sides")
    replay_report.write(report, real_rows, sim, out)
    return report


def diagnostics(real: list[dict], plan: Plan, cal: Calibration) -> dict:
    """The real run's own overheads next to the calibrated ones (to explain a gap; the model never sees them)."""
    def mean(values):
        values = [v for v in values if math.isfinite(v)]
        return statistics.fmean(values) if values else math.nan
    by = {j.index: j for j in plan.jobs}
    hold = [r["end"] - r["start"] - by[r["index"]].runtime + cal.spawn_delay for r in real]
    return {"real_slot_overhead_mean_s": mean(hold), "calibrated_slot_overhead_s": cal.service_overhead,
            "real_run_to_first_mean_s": mean([r["first"] - r["start"] for r in real]),
            "real_last_to_done_mean_s": mean([r["end"] - r["last"] for r in real]),
            "real_submit_to_runjob_mean_s": mean([r["run_submit"] - r["submit"] for r in real]),
            "calibrated_submit_to_runjob_s": cal.stage_new + cal.run_submit}


def attribution(sc: Scenario, cal: Calibration, plan: Plan, real: list[dict], diag: dict, out: Path) -> dict:
    """The simulation again with the slot overhead the real run had (from its journals), to tell a
    calibration that drifted from a model that is wrong. A check after the fact, not a prediction."""
    overhead = diag["real_slot_overhead_mean_s"]
    if not math.isfinite(overhead) or overhead < 0:
        return {}
    hindsight = replace(cal, turnover=max(overhead, 1e-9))
    sim = simulate(sc, hindsight, plan, out / "trace-hindsight.csv")
    rep = replay_report.compare(real, sim, warmup=sc.run.warmup, warmup_jobs=sc.run.warmup_jobs)
    return {"slot_overhead_s": overhead, "sim": rep["sim"], "rel_error": rep["rel_error"],
            "note": "simulated with the real run's mean slot overhead: a check after the fact, not a prediction"}


def alongside(sc: Scenario, cal: Calibration, plan: Plan, real: list[dict], along: dict, out: Path) -> dict:
    """The simulation with the slot turnover measured on the probe agent during the run."""
    if not along.get("gaps"):
        return {"turnover": along}
    sim = simulate(sc, replace(cal, turnover=along["mean_s"]), plan, out / "trace-alongside.csv")
    rep = replay_report.compare(real, sim, warmup=sc.run.warmup, warmup_jobs=sc.run.warmup_jobs)
    return {"turnover": along, "sim": rep["sim"], "rel_error": rep["rel_error"]}


def cal_scenario(sc: Scenario, cal: Calibration) -> Scenario:
    return Scenario.from_dict(cal_mod.merge(sc.data, cal), sc.base_dir)


def _loadavg() -> tuple:
    import os
    return tuple(round(x, 2) for x in os.getloadavg())

