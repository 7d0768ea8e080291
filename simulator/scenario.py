"""The scenario: a validated, immutable description of agents, network, workload, clients and run.

Each section is a frozen dataclass whose fields declare their TOML keys (`simulator.schema.key`):
type, default, bounds and meaning, once. Parsing, defaults, unknown-key errors and the key table
of docs/SIMULATOR.md are derived from these declarations; what cannot be said per key is said per
section in a `@schema.check` function. Model parts are named from their registries
(`arrivals.ARRIVALS`, `distributions.KINDS`, `policies.BUILTIN`, `autoscale.AUTOSCALERS`).
"""
from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from protos import errors as proto_errors
from protos import validation
from simulator import profiles, schema
from simulator.arrivals import ARRIVALS
from simulator.autoscale import Autoscale
from simulator.checks import ScenarioError, Table
from simulator.clients import Clients
from simulator.distributions import Dist
from simulator.keys import set_key as _set_key
from simulator.policies import BUILTIN
from simulator.profiles import Burst, RateProfile
from simulator.schema import Derived, key

POLICIES = tuple(BUILTIN)
ARRIVAL_NAMES = tuple(ARRIVALS)


@dataclass(frozen=True)
class Failures:
    """Agent failures: up for time_to_failure, then down for time_to_repair, alternating."""

    time_to_failure: Dist = key("dist", doc="up times (a distribution)")
    time_to_repair: Dist = key("dist", doc="down times: alternating with the up times")


@schema.check(Failures)
def _check_failures(v: dict, t: Table, ctx: dict) -> None:
    if v["time_to_failure"].mean <= 0:
        raise t.fail("time_to_failure", "mean time to failure must be > 0")


def _python_versions(t: Table, name: str, values: dict) -> tuple[str, ...]:
    python = t.raw(name, ["3.11.9"])
    if isinstance(python, str):
        python = [python]
    if not isinstance(python, list) or not python:
        raise t.fail(name, "must be a list of Python versions like ['3.10.14', '3.11.9']")
    for v in python:
        try:
            parsed = Version(v) if isinstance(v, str) else None
        except InvalidVersion:
            parsed = None
        if parsed is None or parsed.is_prerelease or len(parsed.release) != 3:
            raise ScenarioError(t.key(name), v, "each version must be a final release major.minor.micro, like '3.11.9'")
    return tuple(python)


@dataclass(frozen=True)
class AgentGroup:
    """`count` identical agents, each with `slots` slots; runtimes are divided by `speed`."""

    name: str = key("string", Derived(lambda v: f"group{v['_index']}", "`group<i>`"),
                    "group name (used in metrics: `utilisation.<name>`)")
    count: int = key("int", 1, "agents in the group", minimum=1)
    slots: int = key("int", 1, "slots per agent", minimum=1)
    python: tuple[str, ...] = key("custom", doc="interpreter versions offered (final `major.minor.micro`)",
                                  read=_python_versions, shown='`["3.11.9"]`')
    speed: float = key("number", 1.0, "runtimes are divided by it", positive=True)
    link_bandwidth: float | None = key("bandwidth", None, "this group's link", positive=True, allow_inf=True,
                                       shown="network's")
    failures: Failures | None = key("table", None, "alternating up and down times", schema=Failures)
    price_per_hour: float | None = key("number", None, "`cost.<group>` = agent-hours x price; `cost` their sum",
                                       init=None)
    autoscale: Autoscale | None = key("table", None, "autoscaling of the group", schema=Autoscale, init=None)


@schema.check(AgentGroup)
def _check_group(v: dict, t: Table, ctx: dict) -> None:
    if v["autoscale"] is not None and v["failures"] is not None:
        raise ScenarioError(f"{t.prefix}.autoscale", v["name"], "an autoscaled group cannot also have failures")


@dataclass(frozen=True)
class Network:
    """File source and links. Transfers share the source and each agent link max-min fairly."""

    enabled: bool = key("bool", True, "staging modelled at all", init=False, shown="true if the table exists")
    source_bandwidth: float = key("bandwidth", math.inf, "the file source's bandwidth", init=math.inf,
                                  positive=True, allow_inf=True)
    source_latency: float = key("duration", 0.0, "the file source's latency, per read", init=0.0)
    link_bandwidth: float = key("bandwidth", 1.25e8, "per agent", init=1.25e8, positive=True, allow_inf=True,
                                shown="125MB/s")
    cache: bool = key("bool", True, "per-agent content cache", init=True)
    cache_capacity: float = key("size", math.inf, "per agent (LRU by bytes)", init=math.inf, positive=True,
                                allow_inf=True)


@dataclass(frozen=True)
class Files:
    """Input files of a job: `count` drawn per job, files drawn from a catalog by popularity."""

    count: Dist = key("dist", 1, "files per job (a distribution, rounded, at least 1)", unit="number")
    catalog: int = key("int", 1000, "distinct files", minimum=1)
    popularity: str = key("choice", "zipf", "file k is picked with probability proportional to 1/k^s, or uniformly",
                          choices=("zipf", "uniform"))
    zipf_s: float = key("number", 1.0, "the exponent s", positive=True)
    size: Dist = key("dist", 1e6, "file size (drawn once per file)", unit="size", shown="1MB")


def _bursts(t: Table, name: str, values: dict) -> tuple[Burst, ...]:
    return profiles.parse_bursts(t)


def _profile(t: Table, name: str, values: dict) -> RateProfile | None:
    profile = profiles.parse(t, values["_base_dir"], values["bursts"])
    if profile is not None:
        if not ARRIVALS[values["arrivals"]].profile:
            raise t.fail("profile", f"a rate profile needs arrivals = "
                                    f"{' or '.join(repr(n) for n, a in ARRIVALS.items() if a.profile)}")
        if t.has("rate"):
            raise t.fail("rate", "give rate or profile, not both")
    return profile


def _rate(t: Table, name: str, values: dict) -> float | None:
    if values["profile"] is not None:
        return None
    if ARRIVALS[values["arrivals"]].from_trace:
        if t.has(name):
            raise t.fail(name, f"arrivals = {values['arrivals']!r} takes its times from the trace, not a rate")
        return None
    return t.number(name, positive=True)


def _trace(t: Table, name: str, values: dict) -> Path | None:
    if values["profile"] is not None or not ARRIVALS[values["arrivals"]].from_trace:
        if t.has(name):
            raise t.fail(name, f"arrivals = {values['arrivals']!r} does not read a trace")
        return None
    raw = t.string(name)
    trace = (values["_base_dir"] / raw) if not Path(raw).is_absolute() else Path(raw)
    if not trace.is_file():
        raise t.fail(name, f"no such file: {trace}")
    return trace


_MISSING = object()


def _runtime(t: Table, name: str, values: dict) -> Dist | None:
    trace = values["trace"]
    raw = t.raw(name, "trace" if trace else _MISSING)
    if raw is _MISSING:
        raise t.fail(name, "is required for poisson and deterministic arrivals")
    if raw == "trace":
        if trace is None:
            raise t.fail(name, "'trace' needs a trace's arrivals ("
                               f"{', '.join(n for n, a in ARRIVALS.items() if a.from_trace)})")
        return None
    return t.dist(name)


def _files(t: Table, name: str, values: dict) -> Files:
    return schema.read(Files, t.table(name) or Table({}, t.key(name)))


def _python_mix(t: Table, name: str, values: dict) -> tuple[tuple[str, float], ...]:
    raw = t.raw(name, [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise t.fail(name, "must be a requirement string or a list of {spec = '...', weight = w}")
    mix = []
    for i, item in enumerate(raw):
        k = f"{t.key(name)}[{i}]"
        if isinstance(item, str):
            spec, weight = item, 1.0
        elif isinstance(item, dict):
            it = Table(item, k)
            spec = it.string("spec", "")
            weight = it.number("weight", 1.0, positive=True)
            it.done()
        else:
            raise ScenarioError(k, item, "must be a string or a table {spec, weight}")
        try:
            validation.parse_python_version(spec)
        except proto_errors.ProtocolError as exc:
            raise ScenarioError(k, spec, exc.message) from None
        mix.append((spec, weight))
    return tuple(mix) or (("", 1.0),)


def _class_name(t: Table, name: str, values: dict) -> str:
    if "_class" not in values:       # a single workload has no name key
        if t.has(name):
            raise t.fail(name, "only a job class ([[workload.classes]]) has a name")
        return "default"
    return t.string(name, f"class{values['_class']}")


@dataclass(frozen=True)
class Workload:
    """Arrivals, per-job runtime, input files and python_version requirements."""

    name: str = key("custom", doc="the job class's name (in `[[workload.classes]]` only)", read=_class_name,
                    shown="`class<i>`")
    arrivals: str = key("choice", "poisson", "how jobs arrive", choices=ARRIVALS)
    bursts: tuple[Burst, ...] = key("custom", doc="`[{start, duration, rate}]`: extra jobs/s from `start` for "
                                    "`duration` (absolute times; needs a profile)", read=_bursts, shown="none")
    profile: RateProfile | None = key(
        "custom", doc='`{points = [[t, rate], ...], repeat = "24h"}` or `{file = "day.csv", repeat}` (CSV header '
        "`time,rate`): a Poisson rate linear between the points, constant after the last or repeating; replaces "
        "`rate`", read=_profile, shown="none")
    rate: float | None = key("custom", doc="jobs/s (rate-driven arrivals)", read=_rate, shown="(required)")
    trace: Path | None = key("custom", doc="the trace file, relative to the scenario (trace arrivals)",
                             read=_trace, shown="(required)")
    time_scale: float = key("number", 1.0, "multiplies trace times (0.1 = ten times faster)", positive=True)
    runtime: Dist | None = key("custom", doc="a distribution, or `\"trace\"`: the trace's run time",
                               read=_runtime, shown="(required) / `\"trace\"`")      # None: from the trace
    files: Files = key("table", doc="the input files of a job", schema=Files, read=_files)
    python: tuple[tuple[str, float], ...] = key(
        "custom", doc="requirement strings or `{spec, weight}` tables, drawn per job", read=_python_mix,
        shown="any Python 3")
    fail_probability: float = key("number", 0.0, "a job ends FAILED instead of SUCCEEDED")

    @property
    def mean_rate(self) -> float | None:
        """The constant rate, or the profile's mean over one period (a day if it does not repeat)."""
        if self.profile is not None:
            return self.profile.mean(self.profile.repeat or 86400.0)
        return self.rate


@schema.check(Workload)
def _check_workload(v: dict, t: Table, ctx: dict) -> None:
    if v["fail_probability"] > 1:
        raise t.fail("fail_probability", "must be a probability between 0 and 1")


CLASSES = schema.Key("custom", None, "several workloads merged in time order: each a workload table (`name`, "
                     "`rate` or `profile`, `bursts`, `runtime`, `python`, `files`, `fail_probability`), "
                     "arriving by a rate-driven process", toml="classes", shown="one class")


def _default_bin(v: dict) -> float | None:
    """Hourly statistics for a daily profile, 1/24 of the period for another repeating profile."""
    p = v["_workload"].profile
    if p is None or not p.repeat:
        return None
    return 3600.0 if p.repeat == 86400.0 else p.repeat / 24


def _optional_duration(t: Table, name: str, values: dict) -> float | None:
    if not t.has(name):
        t.raw(name, None)
        return _BIN_DEFAULTS[name](values)
    if t.data[name] is False:
        t.raw(name)
        return None
    return t.duration(name, positive=True)


_BIN_DEFAULTS = {"bin": _default_bin,
                 "bin_period": lambda v: v["_workload"].profile.repeat if v["_workload"].profile else None}


@dataclass(frozen=True)
class RunControl:
    """When to stop (duration and/or job count), what to discard, seed and replications."""

    duration: float | None = key("duration", None, "stop submitting at this time", positive=True,
                                 shown="one of duration, jobs needed (a trace may stand alone)")
    jobs: int | None = key("int", None, "stop submitting after this many jobs", minimum=1, shown="see duration")
    warmup: float = key("duration", 0.0, "the statistics window opens when it and `warmup_jobs` are passed")
    warmup_jobs: int = key("int", 0, "jobs submitted before the statistics window opens", minimum=0)
    seed: int = key("int", 1, "replication *r* draws from streams seeded by (seed, r)", minimum=0)
    replications: int = key("int", 1, "independent replications", minimum=1)
    drain: bool = key("bool", Derived(lambda v: v["duration"] is None, "true unless `duration` is set"),
                      "after submissions stop, run until every job is DONE")
    sample_interval: float | None = key("duration", None, "WAIT/RUN/DONE sampling", positive=True,
                                        shown="span/200")
    bin: float | None = key("custom", doc="wait statistics by the submit time's bin: `bin.HHH.wait_p95`, "
                            "`.wait_mean`, `.jobs`, and `wait_p95_worst_bin`; false: off", read=_optional_duration,
                            init=None, shown="1h for a daily profile; else off")
    bin_period: float | None = key("custom", doc="bins of (t mod period): 24h gives hour of day",
                                   read=_optional_duration, init=None, shown="the profile's period")
    warm_cache: bool = key("bool", False, "every agent's cache starts as the popularity model leaves it (the most "
                           "requested files up to cache_capacity), not empty", init=False)


@schema.check(RunControl)
def _check_run(v: dict, t: Table, ctx: dict) -> None:
    if v["duration"] is None and v["jobs"] is None and ctx["_workload"].trace is None:
        raise ScenarioError("run", t.data, "needs run.duration or run.jobs (or a trace workload)")
    if v["bin_period"] is not None and v["bin"] is None:
        if t.has("bin_period"):
            raise t.fail("bin_period", "needs run.bin (the width of a bin, e.g. '1h')")
        v["bin_period"] = None
    if v["duration"] is not None and v["warmup"] >= v["duration"]:
        raise t.fail("warmup", f"must be shorter than run.duration ({v['duration']:g} s)")
    if v["jobs"] is not None and v["warmup_jobs"] >= v["jobs"]:
        raise t.fail("warmup_jobs", f"must be fewer than run.jobs ({v['jobs']})")


# the sections of a scenario file, in the order of docs/SIMULATOR.md's key table
SECTIONS: list[tuple[str, Any]] = [("[[agents]]", AgentGroup), ("[network]", Network), ("[workload]", Workload),
                                   ("[[workload.classes]]", CLASSES), ("[clients]", Clients), ("[run]", RunControl)]


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
    nt = top.table("network")
    network = schema.read(Network, nt) if nt is not None else Network()
    groups = tuple(schema.read(AgentGroup, Table(g, f"agents[{i}]"), {"_index": i}) for i, g in enumerate(groups_raw))
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
        workload = schema.read(Workload, wt, {"_base_dir": base_dir})
    clients = schema.read(Clients, top.table("clients") or Table({}, "clients"))
    run = schema.read(RunControl, top.table("run", required=True), {"_workload": workload})
    top.done()
    _check_python(groups, classes or (workload,), bool(classes))
    return Scenario(groups, network, workload, clients, run, data, base_dir, classes)


def _check_python(groups: tuple[AgentGroup, ...], classes: tuple[Workload, ...], several: bool) -> None:
    offered = [v for g in groups for v in g.python]
    for k, w in enumerate(classes):
        for text, _ in w.python:
            req = validation.parse_python_version(text)
            if validation.choose_interpreter([req], offered) is None:
                where = f"workload.classes[{k}].python" if several else "workload.python"
                raise ScenarioError(where, text, "no agent group offers a Python version that satisfies it")


def _classes(wt: Table, base_dir: Path) -> tuple[Workload, ...]:
    raw = wt.raw("classes")
    if not isinstance(raw, list) or not raw:
        raise wt.fail("classes", "must be one or more [[workload.classes]] tables")
    out = []
    for i, item in enumerate(raw):
        ct = Table(item, wt.key(f"classes[{i}]"))
        w = schema.read(Workload, ct, {"_base_dir": base_dir, "_class": i})
        if ARRIVALS[w.arrivals].from_trace:
            raise ct.fail("arrivals", "a job class arrives by a rate-driven process (a trace is one workload)")
        out.append(w)
    names = [w.name for w in out]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise ScenarioError(wt.key(f"classes[{i}].name"), n, "duplicate class name")
    return tuple(out)
