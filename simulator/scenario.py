"""The scenario: a validated, immutable description of agents, network, workload, clients and run."""
from __future__ import annotations

import copy
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from packaging.version import InvalidVersion, Version

from protos import errors as proto_errors
from protos import validation
from simulator import autoscale as autoscale_mod
from protos import units
from simulator import profiles
from simulator.autoscale import Autoscale
from simulator.checks import ScenarioError, Table
from simulator.distributions import Dist
from simulator.keys import set_key as _set_key
from simulator.profiles import RateProfile

POLICIES = ("random", "round_robin", "least_loaded", "power_of_two", "cache_affinity")
DISPATCH = ("on_arrival", "when_free")
ARRIVALS = ("poisson", "deterministic", "swf", "csv")


@dataclass(frozen=True)
class Failures:
    """Agent failures: up for time_to_failure, then down for time_to_repair, alternating."""

    time_to_failure: Dist
    time_to_repair: Dist


@dataclass(frozen=True)
class AgentGroup:
    """`count` identical agents, each with `slots` slots; runtimes are divided by `speed`."""

    name: str
    count: int
    slots: int
    python: tuple[str, ...]
    speed: float
    link_bandwidth: float | None
    failures: Failures | None
    price_per_hour: float | None = None
    autoscale: Autoscale | None = None


@dataclass(frozen=True)
class Network:
    """File source and links. Transfers share the source and each agent link max-min fairly."""

    enabled: bool = False
    source_bandwidth: float = math.inf
    source_latency: float = 0.0
    link_bandwidth: float = 1.25e8
    cache: bool = True
    cache_capacity: float = math.inf


@dataclass(frozen=True)
class Files:
    """Input files of a job: `count` drawn per job, files drawn from a catalog by popularity."""

    count: Dist
    catalog: int
    popularity: str
    zipf_s: float
    size: Dist


@dataclass(frozen=True)
class Workload:
    """Arrivals, per-job runtime, input files and python_version requirements."""

    arrivals: str
    rate: float | None
    trace: Path | None
    time_scale: float
    runtime: Dist | None              # None: take the runtime from the trace
    files: Files
    python: tuple[tuple[str, float], ...]  # (requirement text, weight)
    fail_probability: float
    profile: RateProfile | None = None     # a time-varying Poisson rate (then `rate` is None)
    name: str = "default"                  # the job class

    @property
    def mean_rate(self) -> float | None:
        """The constant rate, or the profile's mean over one period (a day if it does not repeat)."""
        if self.profile is not None:
            return self.profile.mean(self.profile.repeat or 86400.0)
        return self.rate


@dataclass(frozen=True)
class Clients:
    """How clients choose agents, poll, resubmit, and what their RPCs cost the agent."""

    policy: str | Callable
    dispatch: str
    poll_interval: float
    poll_backoff: float
    poll_max_interval: float
    rpc_latency: float
    rpc_cost_poll: float
    rpc_cost_stage: float
    rpc_cost_run: float
    resubmit_interrupted: bool
    max_resubmits: int


@dataclass(frozen=True)
class RunControl:
    """When to stop (duration and/or job count), what to discard, seed and replications."""

    duration: float | None
    jobs: int | None
    warmup: float
    warmup_jobs: int
    seed: int
    replications: int
    drain: bool
    sample_interval: float | None
    bin: float | None = None           # per-time-bin wait statistics (e.g. 1h: by hour)
    bin_period: float | None = None    # bins of (t mod period): 24h gives hour of day


@dataclass(frozen=True)
class Scenario:
    """A whole validated scenario. `data` is the raw table it came from (for sweeps and output)."""

    agents: tuple[AgentGroup, ...]
    network: Network
    workload: Workload
    clients: Clients
    run: RunControl
    data: dict = field(repr=False, compare=False, default_factory=dict)
    base_dir: Path = field(repr=False, compare=False, default=Path("."))
    classes: tuple[Workload, ...] = ()     # several job classes; `workload` is the first

    @property
    def job_classes(self) -> tuple[Workload, ...]:
        return self.classes or (self.workload,)

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> "Scenario":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError("(file)", str(path), f"cannot read: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError("(file)", str(path), f"not valid TOML: {exc}") from None
        return cls.from_dict(data, base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path = ".") -> "Scenario":
        return _parse(copy.deepcopy(data), Path(base_dir))

    def with_value(self, key: str, value: Any) -> "Scenario":
        """A copy with one dotted key changed (`agents.count`, `agents[gpu].slots`, `workload.rate`)."""
        data = copy.deepcopy(self.data)
        _set_key(data, key, value)
        return _parse(data, self.base_dir)

    def with_values(self, changes: dict[str, Any]) -> "Scenario":
        """A copy with several dotted keys changed at once, validated together."""
        data = copy.deepcopy(self.data)
        for key, value in changes.items():
            _set_key(data, key, value)
        return _parse(data, self.base_dir)

    @property
    def total_slots(self) -> int:
        return sum(g.count * g.slots for g in self.agents)


# --- parsing ------------------------------------------------------------------------------

def _parse(data: dict, base_dir: Path) -> Scenario:
    top = Table(data, "")
    groups_raw = top.raw("agents")
    if isinstance(groups_raw, dict):
        groups_raw = [groups_raw]
        data["agents"] = groups_raw
    if not isinstance(groups_raw, list) or not groups_raw:
        raise ScenarioError("agents", groups_raw, "must be one or more [[agents]] tables")
    network = _network(top.table("network"))
    groups = tuple(_group(Table(g, f"agents[{i}]"), i) for i, g in enumerate(groups_raw))
    names = [g.name for g in groups]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ScenarioError(f"agents[{i}].name", name, "duplicate group name")
    wt = top.table("workload", required=True)
    classes: tuple[Workload, ...] = ()
    if wt.has("classes"):
        classes = _classes(wt, base_dir)
        wt.done()
        workload = classes[0]
    else:
        workload = _workload(wt, base_dir)
    clients = _clients(top.table("clients") or Table({}, "clients"))
    run = _run(top.table("run", required=True), workload)
    top.done()
    offered = [v for g in groups for v in g.python]
    for w in classes or (workload,):
        for text, _ in w.python:
            req = validation.parse_python_version(text)
            if validation.choose_interpreter([req], offered) is None:
                key = "workload.python" if not classes else f"workload.classes[{classes.index(w)}].python"
                raise ScenarioError(key, text, "no agent group offers a Python version that satisfies it")
    for i, g in enumerate(groups):
        if g.autoscale is not None and g.failures is not None:
            raise ScenarioError(f"agents[{i}].autoscale", g.name, "an autoscaled group cannot also have failures")
    return Scenario(groups, network, workload, clients, run, data, base_dir, classes)


def _classes(wt: Table, base_dir: Path) -> tuple[Workload, ...]:
    raw = wt.raw("classes")
    if not isinstance(raw, list) or not raw:
        raise wt.fail("classes", "must be one or more [[workload.classes]] tables")
    out = []
    for i, item in enumerate(raw):
        ct = Table(item, wt.key(f"classes[{i}]"))
        name = ct.string("name", f"class{i}")
        w = _workload(ct, base_dir)
        if w.arrivals not in ("poisson", "deterministic"):
            raise ct.fail("arrivals", "a job class arrives as poisson or deterministic (a trace is one workload)")
        out.append(Workload(**{**w.__dict__, "name": name}))
    names = [w.name for w in out]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise ScenarioError(wt.key(f"classes[{i}].name"), n, "duplicate class name")
    return tuple(out)


def _group(t: Table, index: int) -> AgentGroup:
    name = t.string("name", f"group{index}")
    count = t.integer("count", 1, minimum=1)
    slots = t.integer("slots", 1, minimum=1)
    python = t.raw("python", ["3.11.9"])
    if isinstance(python, str):
        python = [python]
    if not isinstance(python, list) or not python:
        raise t.fail("python", "must be a list of Python versions like ['3.10.14', '3.11.9']")
    for v in python:
        try:
            parsed = Version(v) if isinstance(v, str) else None
        except InvalidVersion:
            parsed = None
        if parsed is None or parsed.is_prerelease or len(parsed.release) != 3:
            raise ScenarioError(t.key("python"), v, "each version must be a final release major.minor.micro, like '3.11.9'")
    speed = t.number("speed", 1.0, positive=True)
    link = t.number("link_bandwidth", None, convert=units.bandwidth, positive=True, allow_inf=True) \
        if t.has("link_bandwidth") else t.raw("link_bandwidth", None)
    failures = None
    ft = t.table("failures")
    if ft is not None:
        failures = Failures(ft.dist("time_to_failure"), ft.dist("time_to_repair"))
        if failures.time_to_failure.mean <= 0:
            raise ft.fail("time_to_failure", "mean time to failure must be > 0")
        ft.done()
    price = t.number("price_per_hour", None) if t.has("price_per_hour") else t.raw("price_per_hour", None)
    at = t.table("autoscale")
    auto = autoscale_mod.parse(at, count) if at is not None else None
    t.done()
    return AgentGroup(name, count, slots, tuple(python), speed, link, failures, price, auto)


def _network(t: Table | None) -> Network:
    if t is None:
        return Network()
    net = Network(
        enabled=t.boolean("enabled", True),
        source_bandwidth=t.number("source_bandwidth", math.inf, convert=units.bandwidth, positive=True, allow_inf=True),
        source_latency=t.duration("source_latency", 0.0),
        link_bandwidth=t.number("link_bandwidth", 1.25e8, convert=units.bandwidth, positive=True, allow_inf=True),
        cache=t.boolean("cache", True),
        cache_capacity=t.number("cache_capacity", math.inf, convert=units.size, positive=True, allow_inf=True),
    )
    t.done()
    return net


def _workload(t: Table, base_dir: Path) -> Workload:
    arrivals = t.string("arrivals", "poisson", choices=ARRIVALS)
    rate = trace = None
    profile = profiles.parse(t, base_dir)
    if profile is not None:
        if arrivals != "poisson":
            raise t.fail("profile", "a rate profile needs arrivals = 'poisson'")
        if t.has("rate"):
            raise t.fail("rate", "give rate or profile, not both")
    elif arrivals in ("poisson", "deterministic"):
        rate = t.number("rate", positive=True)
    else:
        raw = t.string("trace")
        trace = (base_dir / raw) if not Path(raw).is_absolute() else Path(raw)
        if not trace.is_file():
            raise t.fail("trace", f"no such file: {trace}")
    time_scale = t.number("time_scale", 1.0, positive=True)
    runtime_raw = t.raw("runtime", "trace" if trace else _MISSING_RUNTIME)
    if runtime_raw is _MISSING_RUNTIME:
        raise t.fail("runtime", "is required for poisson and deterministic arrivals")
    if runtime_raw == "trace":
        if trace is None:
            raise t.fail("runtime", "'trace' needs arrivals = 'swf' or 'csv'")
        runtime = None
    else:
        runtime = t.dist("runtime")
    ft = t.table("files") or Table({}, t.key("files"))
    files = Files(
        count=ft.dist("count", 1, convert=float),
        catalog=ft.integer("catalog", 1000, minimum=1),
        popularity=ft.string("popularity", "zipf", choices=("zipf", "uniform")),
        zipf_s=ft.number("zipf_s", 1.0, positive=True),
        size=ft.dist("size", 1e6, convert=units.size),
    )
    ft.done()
    python = _python_mix(t)
    fail_p = t.number("fail_probability", 0.0)
    if fail_p > 1:
        raise t.fail("fail_probability", "must be a probability between 0 and 1")
    t.done()
    return Workload(arrivals, rate, trace, time_scale, runtime, files, python, fail_p, profile)


_MISSING_RUNTIME = object()


def _python_mix(t: Table) -> tuple[tuple[str, float], ...]:
    raw = t.raw("python", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise t.fail("python", "must be a requirement string or a list of {spec = '...', weight = w}")
    mix = []
    for i, item in enumerate(raw):
        key = f"{t.key('python')}[{i}]"
        if isinstance(item, str):
            spec, weight = item, 1.0
        elif isinstance(item, dict):
            it = Table(item, key)
            spec = it.string("spec", "")
            weight = it.number("weight", 1.0, positive=True)
            it.done()
        else:
            raise ScenarioError(key, item, "must be a string or a table {spec, weight}")
        try:
            validation.parse_python_version(spec)
        except proto_errors.ProtocolError as exc:
            raise ScenarioError(key, spec, exc.message) from None
        mix.append((spec, weight))
    return tuple(mix) or (("", 1.0),)


def _clients(t: Table) -> Clients:
    policy = t.raw("policy", "least_loaded")
    if not callable(policy):
        if not isinstance(policy, str) or (policy not in POLICIES and not re.fullmatch(r"[\w.]+:\w+", policy)):
            raise t.fail("policy", f"must be one of {', '.join(POLICIES)} or 'module:function' of your own")
    interval = t.duration("poll_interval", 1.0)
    clients = Clients(
        policy=policy,
        dispatch=t.string("dispatch", "on_arrival", choices=DISPATCH),
        poll_interval=interval,
        poll_backoff=t.number("poll_backoff", 1.0, minimum=1.0),
        poll_max_interval=t.duration("poll_max_interval", max(interval, 30.0) if interval > 0 else 0.0),
        rpc_latency=t.duration("rpc_latency", 0.0),
        rpc_cost_poll=t.duration("rpc_cost_poll", 0.0),
        rpc_cost_stage=t.duration("rpc_cost_stage", 0.0),
        rpc_cost_run=t.duration("rpc_cost_run", 0.0),
        resubmit_interrupted=t.boolean("resubmit_interrupted", False),
        max_resubmits=t.integer("max_resubmits", 3, minimum=0),
    )
    if interval > 0 and clients.poll_max_interval < interval:
        raise t.fail("poll_max_interval", "must be >= poll_interval")
    t.done()
    return clients


def _run(t: Table, workload: Workload) -> RunControl:
    duration = t.duration("duration", None, positive=True) if t.has("duration") else t.raw("duration", None)
    jobs = t.integer("jobs", None, minimum=1) if t.has("jobs") else t.raw("jobs", None)
    if duration is None and jobs is None and workload.trace is None:
        raise ScenarioError("run", t.data, "needs run.duration or run.jobs (or a trace workload)")
    run = RunControl(
        duration=duration,
        jobs=jobs,
        warmup=t.duration("warmup", 0.0),
        warmup_jobs=t.integer("warmup_jobs", 0, minimum=0),
        seed=t.integer("seed", 1, minimum=0),
        replications=t.integer("replications", 1, minimum=1),
        drain=t.boolean("drain", duration is None),
        sample_interval=t.duration("sample_interval", None, positive=True) if t.has("sample_interval") else t.raw("sample_interval", None),
        bin=_optional_duration(t, "bin", _default_bin(workload)),
        bin_period=_optional_duration(t, "bin_period", workload.profile.repeat if workload.profile else None),
    )
    if run.bin_period is not None and run.bin is None:
        if t.has("bin_period"):
            raise t.fail("bin_period", "needs run.bin (the width of a bin, e.g. '1h')")
        run = RunControl(**{**run.__dict__, "bin_period": None})
    if duration is not None and run.warmup >= duration:
        raise t.fail("warmup", f"must be shorter than run.duration ({duration:g} s)")
    if jobs is not None and run.warmup_jobs >= jobs:
        raise t.fail("warmup_jobs", f"must be fewer than run.jobs ({jobs})")
    t.done()
    return run


def _default_bin(workload: Workload) -> float | None:
    """Hourly statistics for a daily profile, 1/24 of the period for another repeating profile."""
    p = workload.profile
    if p is None or not p.repeat:
        return None
    return 3600.0 if p.repeat == 86400.0 else p.repeat / 24


def _optional_duration(t: Table, name: str, default: float | None) -> float | None:
    if not t.has(name):
        t.raw(name, None)
        return default
    if t.data[name] is False:
        t.raw(name)
        return None
    return t.duration(name, positive=True)
