"""Probability distributions of a scenario: validated specs that build samplers on a given RNG.

Each kind is an entry of the `KINDS` registry (its parameters, exact mean and sampler), so a new
distribution is one `KINDS.register(...)` here; parsing, errors and the docs follow from it."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import partial
from typing import Callable

from protos import units
from simulator.registry import Registry

Params = dict[str, float]


@dataclass(frozen=True)
class DistKind:
    """One distribution: its parameters (`unitless` ones are plain numbers, the others take the
    key's unit), those that must be > 0, its exact mean and a sampler factory."""

    params: tuple[str, ...]
    mean: Callable[[Params], float]
    sampler: Callable[[Params, random.Random], Callable[[], float]]
    unitless: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()
    example: str = ""


def _exponential(p: Params, rng: random.Random) -> Callable[[], float]:
    mean = p["mean"]
    return partial(rng.expovariate, 1.0 / mean) if mean > 0 else (lambda: 0.0)


def _lognormal(p: Params, rng: random.Random) -> Callable[[], float]:
    # parameterised by the distribution's own mean and the sigma of the underlying normal
    sigma = p["sigma"]
    mu = math.log(p["mean"]) - sigma * sigma / 2
    return partial(rng.lognormvariate, mu, sigma)


def _gamma(p: Params, rng: random.Random) -> Callable[[], float]:
    shape = p["shape"]
    return partial(rng.gammavariate, shape, p["mean"] / shape)


def _pareto(p: Params, rng: random.Random) -> Callable[[], float]:
    alpha, minimum = p["alpha"], p["minimum"]
    return lambda: minimum * rng.paretovariate(alpha)


def _fixed(p: Params, rng: random.Random) -> Callable[[], float]:
    v = p["value"]
    return lambda: v


KINDS: Registry[DistKind] = Registry("distribution")
KINDS.register("fixed", DistKind(("value",), lambda p: p["value"], _fixed, example="value = 3"),
               "always `value`")
KINDS.register("exponential", DistKind(("mean",), lambda p: p["mean"], _exponential, example="mean = 10"),
               "memoryless, of mean `mean`")
KINDS.register("uniform", DistKind(("low", "high"), lambda p: (p["low"] + p["high"]) / 2,
                                   lambda p, rng: partial(rng.uniform, p["low"], p["high"]),
                                   example="low = 1, high = 4"), "between `low` and `high`")
KINDS.register("lognormal", DistKind(("mean", "sigma"), lambda p: p["mean"], _lognormal, unitless=("sigma",),
                                     positive=("mean",), example="mean = 20, sigma = 1.0"),
               "of mean `mean` (its own); `sigma` of the underlying normal")
KINDS.register("gamma", DistKind(("shape", "mean"), lambda p: p["mean"], _gamma, unitless=("shape",),
                                 positive=("shape",), example="shape = 2, mean = 15"), "of shape `shape`, mean `mean`")
KINDS.register("pareto", DistKind(("alpha", "minimum"),
                                  lambda p: math.inf if p["alpha"] <= 1 else p["alpha"] * p["minimum"] / (p["alpha"] - 1),
                                  _pareto, unitless=("alpha",), positive=("alpha", "minimum"),
                                  example="alpha = 1.5, minimum = 2"), "heavy-tailed from `minimum`, index `alpha`")


class DistError(ValueError):
    """A distribution spec that does not validate; `key` is the offending sub-key."""

    def __init__(self, key: str, value: object, message: str, missing: bool = False):
        super().__init__(message)
        self.key = key
        self.value = value
        self.missing = missing


@dataclass(frozen=True)
class Dist:
    """A distribution by name and parameters. `mean` is its exact mean (inf when it has none)."""

    kind: str
    params: tuple[tuple[str, float], ...]

    def p(self, name: str) -> float:
        return dict(self.params)[name]

    @property
    def mean(self) -> float:
        return KINDS[self.kind].mean(dict(self.params))

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """A zero-argument function drawing from this distribution with `rng` (bound methods: fast)."""
        return KINDS[self.kind].sampler(dict(self.params), rng)

    def describe(self) -> str:
        return f"{self.kind}(" + ", ".join(f"{k}={v:g}" for k, v in self.params) + ")"


def parse(value: object, convert: Callable[[object], float] = units.duration) -> Dist:
    """A number (or unit string) is a fixed value; a table names `dist` and its parameters."""
    if not isinstance(value, dict):
        try:
            v = convert(value)
        except units.UnitError as exc:
            raise DistError("", value, f"{exc}, or a table like {{dist = \"exponential\", mean = 10}}") from None
        if not v >= 0 or math.isinf(v):
            raise DistError("", value, "must be a finite number >= 0")
        return Dist("fixed", (("value", v),))
    kind = value.get("dist")
    if kind not in KINDS:
        raise DistError("dist", kind, f"unknown distribution; choose one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    unknown = set(value) - set(spec.params) - {"dist"}
    if unknown:
        name = sorted(unknown)[0]
        raise DistError(name, value[name], f"unknown parameter for {kind}; expected {', '.join(spec.params)}")
    params = []
    for name in spec.params:
        if name not in value:
            raise DistError(name, None, f"missing parameter for {kind}", missing=True)
        conv = float if name in spec.unitless else convert
        try:
            v = conv(value[name]) if not isinstance(value[name], bool) else None
        except (units.UnitError, TypeError, ValueError):
            v = None
        if v is None or not math.isfinite(v) or v < 0:
            raise DistError(name, value[name], "must be a finite number >= 0")
        if name in spec.positive and v <= 0:
            raise DistError(name, value[name], "must be > 0")
        params.append((name, v))
    dist = Dist(kind, tuple(params))
    if kind == "uniform" and dist.p("low") > dist.p("high"):
        raise DistError("high", value["high"], "must be >= low")
    return dist
