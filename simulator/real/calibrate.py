"""Measure the reference agent on this machine and write the figures as a scenario fragment."""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
import tomllib
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from protos.client import AgentClient
from protos.states import JobState
from simulator.real import measure as bench
from simulator.real.turnover import measure_turnover

# A probe job: stamps its first and last statements (time.time()) into two witness files.
PROBE = ("import time\nopen({start!r}, 'w').write(repr(time.time()))\ntime.sleep({sleep!r})\n"
         "open({end!r}, 'w').write(repr(time.time()))\n")


class CalibrationError(RuntimeError):
    """Calibration could not run or a calibration file is unusable; the message says which."""


@dataclass
class Settings:
    """How much to measure: polls per thread count, starts, staged file size and rounds, probe jobs."""

    poll_calls: int = 2000
    starts: int = 15
    stage_mb: int = 32
    stage_rounds: int = 3
    probes: int = 15
    turnover_rounds: int = 6
    turnover_sleep: float = 0.5

    @classmethod
    def quick(cls) -> "Settings":
        return cls(poll_calls=300, starts=5, stage_mb=4, stage_rounds=2, probes=5, turnover_rounds=3,
                   turnover_sleep=0.3)


@dataclass
class Calibration:
    """Measured costs of one agent (seconds, bytes/s) and the scenario keys derived from them.

    Scenario keys (accepted by simulator.scenario): clients.rpc_latency, rpc_cost_poll,
    rpc_cost_stage, rpc_cost_run, network.source_bandwidth, network.source_latency.
    `start_overhead` (RunJob call -> the job's first statement), `run_to_running` (RunJob call
    -> RUN) and `done_delay` (the job's last statement -> DONE seen) have no scenario key. The
    slot is held from RunJob's acceptance until DONE, so replay adds `service_overhead`
    (the measured slot turnover) to each job's service time and reports RUN `spawn_delay` after
    the simulated slot start.
    """

    target: str
    poll_rtt: float              # mean status-poll round trip, 1 client thread
    poll_p50: float
    poll_p99: float
    stage_new: float             # StageInFiles of one new small file (mean)
    stage_cached: float          # StageInFiles of one small file already in the agent's cache (mean)
    run_submit: float            # first RunJob, the call's round trip (mean)
    start_overhead: float        # RunJob call -> first statement of the job (mean of bench_start runs)
    bare_spawn: float            # Popen -> first statement, same interpreter (mean, the bench's baseline)
    done_delay: float            # last statement of the job -> DONE seen by a poll (mean)
    run_to_running: float        # RunJob call -> RUN seen by a poll (mean)
    turnover: float              # a busy slot: one job's last statement -> the next job's first (mean)
    staging_bandwidth: float     # bytes/s, a new file source -> cache -> job dir (bench median)
    copy_bandwidth: float        # bytes/s, shutil.copyfile of the same file (bench baseline)
    host: str = field(default_factory=platform.node)
    when: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    load_average: tuple = field(default_factory=lambda: tuple(round(x, 2) for x in os.getloadavg()))
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    bench: dict = field(default_factory=dict)

    @property
    def spawn_delay(self) -> float:
        """RunJob accepted -> RUN: run_to_running less the RunJob call's own return trip."""
        return max(0.0, self.run_to_running - self.run_submit + self.poll_rtt / 2)

    @property
    def launch_delay(self) -> float:
        """RunJob accepted -> first statement: start_overhead less the RunJob call's own return trip."""
        return max(0.0, self.start_overhead - self.run_submit + self.poll_rtt / 2)

    @property
    def service_overhead(self) -> float:
        """Seconds a slot is held beyond the job's own runtime: exit to DONE, then the next launch.

        Measured directly as the slot turnover with every slot busy; launch_delay + done_delay,
        measured one job at a time on an idle agent, is the fallback and a cross-check.
        """
        return self.turnover if self.turnover > 0 else self.launch_delay + self.done_delay

    def scenario_keys(self) -> dict:
        return {
            "clients": {
                # the two RPCs before WAIT (StageInFiles, RunJob); the model charges rpc_latency to each
                "rpc_latency": f"{(self.stage_new + self.run_submit) / 2 * 1e3:.4g}ms",
                "rpc_cost_poll": f"{self.poll_rtt * 1e3:.4g}ms",
                "rpc_cost_stage": f"{self.stage_new * 1e3:.4g}ms",
                "rpc_cost_run": f"{self.run_submit * 1e3:.4g}ms",
            },
            "network": {
                "source_bandwidth": f"{self.staging_bandwidth / 1e6:.4g}MB/s",
                "source_latency": f"{max(0.0, self.stage_new - self.stage_cached) * 1e3:.4g}ms",
            },
        }

    def to_toml(self, command: str = "agent-sim calibrate") -> str:
        keys = self.scenario_keys()
        lines = [
            f"# Calibrated by `{command}` on {self.host} ({self.cpus} CPUs, load average "
            f"{' '.join(map(str, self.load_average))}) at {self.when}, target {self.target}.",
            "# Merge into a scenario's [clients] and [network] tables (network keys only where staging is on);",
            "# `agent-sim replay --calibration` does it. All figures, with the raw benchmark output, are in",
            "# the .json file of the same name.",
            f"# No scenario key (replay adds them to each job's service time): spawn_delay = "
            f"{self.spawn_delay * 1e3:.4g} ms (RunJob accepted -> RUN), launch_delay = "
            f"{self.launch_delay * 1e3:.4g} ms (start_overhead {self.start_overhead * 1e3:.4g} ms less the RunJob "
            f"call), done_delay = {self.done_delay * 1e3:.4g} ms, slot turnover (service overhead) = "
            f"{self.turnover * 1e3:.4g} ms.",
        ]
        for table, values in keys.items():
            lines += ["", f"[{table}]"] + [f'{k} = "{v}"' for k, v in values.items()]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["load_average"] = list(self.load_average)
        d["launch_delay"] = self.launch_delay
        d["spawn_delay"] = self.spawn_delay
        d["service_overhead"] = self.service_overhead
        d["scenario_keys"] = self.scenario_keys()
        return d

    def write(self, path: str | Path, command: str = "agent-sim calibrate") -> tuple[Path, Path]:
        """Write the fragment to `path` (.toml) and every figure to the .json of the same name."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_toml(command), encoding="utf-8")
        side = sidecar(path)
        side.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path, side

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        """Read a fragment written by write() (its .json sidecar holds the figures)."""
        path = Path(path)
        side = sidecar(path)
        if not side.is_file():
            raise CalibrationError(f"calibration {str(path)!r}: its figures file {str(side)!r} is missing "
                                   "(write both with `agent-sim calibrate --out FILE.toml`)")
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
            names = [f for f in cls.__dataclass_fields__]
            kwargs = {k: data[k] for k in names if k in data}
            kwargs["load_average"] = tuple(kwargs.get("load_average", ()))
            cal = cls(**kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise CalibrationError(f"calibration {str(side)!r} is not a calibration file: {exc}") from None
        for name in ("poll_rtt", "stage_new", "stage_cached", "run_submit", "start_overhead", "done_delay",
                     "run_to_running", "turnover", "staging_bandwidth"):
            v = getattr(cal, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 or v != v:
                raise CalibrationError(f"calibration {str(side)!r}: {name} = {v!r} is not a number >= 0")
        return cal


def sidecar(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def merge(data: dict, cal: Calibration) -> dict:
    """A copy of scenario `data` with the calibrated keys set (network ones only if staging is on)."""
    import copy
    out = copy.deepcopy(data)
    keys = cal.scenario_keys()
    out.setdefault("clients", {}).update(keys["clients"])
    net = out.get("network")
    if isinstance(net, dict) and net.get("enabled", True):
        net.update(keys["network"])
    return out


# --- measuring ---------------------------------------------------------------------------------

def _wait_file(path: Path, deadline: float) -> float:
    end = time.monotonic() + deadline
    while True:
        try:
            text = path.read_text()
            if text:
                return float(text)
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() > end:
            raise CalibrationError(f"probe job never wrote {path}: is the target's source {path.parent.parent}?")
        time.sleep(0.001)


def _poll_until(client: AgentClient, job: str, states: tuple, limit: float = 60.0) -> float:
    """Poll every ~1 ms until the job is in one of `states`; the estimated time.time() it got there.

    The change lies between the server's handling of the last poll that did not see it and of the
    first that did: the midpoint of those two polls' midpoints.
    """
    end = time.monotonic() + limit
    previous = time.time()
    while True:
        sent = time.time()
        state = client.status(job)
        got = time.time()
        if state in states:
            return ((previous + sent) / 2 + (sent + got) / 2) / 2
        previous = (sent + got) / 2
        if time.monotonic() > end:
            raise CalibrationError(f"probe job {job} not in {[s.name for s in states]} after {limit:g} s")
        time.sleep(0.001)


def probe_submissions(client: AgentClient, source: Path, tmp: Path, runs: int) -> dict:
    """Per probe job: StageInFiles (new file, cached file), first RunJob, RunJob -> RUN seen,
    RUN -> first statement, last statement -> DONE seen. Means over `runs` jobs, in seconds."""
    rows = []
    for _ in range(runs):
        job, entry = str(uuid.uuid4()), str(uuid.uuid4())
        start, end = tmp / f"probe-{job}.start", tmp / f"probe-{job}.end"
        (source / entry).write_text(PROBE.format(start=str(start), end=str(end), sleep=0.05))
        t = time.perf_counter()
        if client.stage_in(job, [entry]) != [entry]:
            raise CalibrationError("the target did not stage the probe file: give its --source-dir")
        new = time.perf_counter() - t
        t = time.perf_counter()
        client.stage_in(str(uuid.uuid4()), [entry])
        cached = time.perf_counter() - t
        t, wall = time.perf_counter(), time.time()
        client.run(job, [entry])
        run = time.perf_counter() - t
        running = _poll_until(client, job, (JobState.RUN, JobState.DONE))
        first = _wait_file(start, 60)
        done = _poll_until(client, job, (JobState.DONE,))
        rows.append((new, cached, run, running - wall, first - running, max(0.0, done - _wait_file(end, 5))))
    cols = list(zip(*rows))
    names = ("stage_new_s", "stage_cached_s", "run_submit_s", "run_to_running_s", "running_to_first_s",
             "done_delay_s")
    out = {"runs": runs, **{n: statistics.fmean(c) for n, c in zip(names, cols)}}
    out["done_delay_max_s"] = max(cols[-1])
    return out


def measure(address: str, source: Path, settings: Settings | None = None, work: Path | None = None,
            fleet: list[tuple[str, int]] | None = None, slots: int = 2) -> Calibration:
    """Measure the agent at `address`, whose file source is the local directory `source`.

    The slot turnover is measured with every slot of `fleet` ((address, slots) pairs sharing the
    source; default: this agent with `slots`) busy at once, as in a loaded run.
    """
    settings = settings or Settings()
    source = Path(source)
    if not source.is_dir():
        raise CalibrationError(f"source directory {str(source)!r} does not exist")
    with tempfile.TemporaryDirectory(prefix="calibrate-", dir=work) as tmp_name:
        tmp = Path(tmp_name)
        with grpc.insecure_channel(address) as channel:
            client = AgentClient(channel, timeout=60)
            try:
                probes = probe_submissions(client, source, tmp, settings.probes)
            except Exception as exc:   # an unreachable target: say which
                from protos.client import AgentCallError
                if isinstance(exc, AgentCallError):
                    raise CalibrationError(f"target {address}: {exc}") from None
                raise
            job, entry = str(uuid.uuid4()), str(uuid.uuid4())
            (source / entry).write_text("pass\n")
            client.stage_in(job, [entry])
            client.run(job, [entry])
            client.wait_until_done(job, poll_interval=0.01, deadline=60)
            _, lat = bench.polls(address, job, settings.poll_calls, 1)
            # one start per call: the bench reports medians, the model needs the mean (the slot's hold)
            singles = [bench.bench_start(client, source, tmp, 1) for _ in range(settings.starts)]
            agent_ms, bare_ms = [s["agent_ms"] for s in singles], [s["bare_ms"] for s in singles]
            start = {"runs": len(singles), "agent_ms": statistics.fmean(agent_ms), "bare_ms": statistics.fmean(bare_ms),
                     "agent_ms_p50": statistics.median(agent_ms), "bare_ms_p50": statistics.median(bare_ms),
                     "agent_ms_max": max(agent_ms)}
            staging = bench.bench_staging(client, source, tmp, settings.stage_mb, settings.stage_rounds)
        turn = measure_turnover(fleet or [(address, slots)], source, tmp, settings.turnover_rounds,
                                settings.turnover_sleep, PROBE)
    return Calibration(
        target=address, poll_rtt=statistics.fmean(lat), poll_p50=bench.pct(lat, 0.5), poll_p99=bench.pct(lat, 0.99),
        stage_new=probes["stage_new_s"], stage_cached=probes["stage_cached_s"], run_submit=probes["run_submit_s"],
        start_overhead=start["agent_ms"] / 1e3, bare_spawn=start["bare_ms"] / 1e3, done_delay=probes["done_delay_s"],
        run_to_running=probes["run_to_running_s"], turnover=turn["mean_s"],
        staging_bandwidth=staging["stage_mb_s"] * 2**20, copy_bandwidth=staging["copy_mb_s"] * 2**20,
        bench={"probes": probes, "start": start, "staging": staging, "turnover": turn,
               "poll": {"calls": len(lat), "mean_ms": statistics.fmean(lat) * 1e3}})


def calibrate(target: str | None = None, source: str | Path | None = None, settings: Settings | None = None,
              slots: int = 2) -> Calibration:
    """Measure `target` (its local source directory given), or a reference agent started for the purpose."""
    if target is not None:
        if source is None:
            raise CalibrationError("a target needs its file source directory (--source-dir)")
        return measure(target, Path(source), settings)
    from simulator.real.fleet import Fleet
    with tempfile.TemporaryDirectory(prefix="calibrate-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        with Fleet([("calibration", slots)], tmp / "source", tmp) as fleet:
            return measure(fleet.addresses[0], tmp / "source", settings, work=tmp, slots=slots)


def read_fragment(path: str | Path) -> dict:
    """The TOML tables of a fragment (for tests and merging by hand)."""
    with open(path, "rb") as fh:
        return tomllib.load(fh)
