"""Probability distributions of a scenario: validated specs that build samplers on a given RNG."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import partial
from typing import Callable

from protos import units

# name -> (required parameters, optional parameters)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fixed": (("value",), ()),
    "exponential": (("mean",), ()),
    "uniform": (("low", "high"), ()),
    "lognormal": (("mean", "sigma"), ()),
    "gamma": (("shape", "mean"), ()),
    "pareto": (("alpha", "minimum"), ()),
}


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
        k = self.kind
        if k == "fixed":
            return self.p("value")
        if k in ("exponential", "lognormal", "gamma"):
            return self.p("mean")
        if k == "uniform":
            return (self.p("low") + self.p("high")) / 2
        a, m = self.p("alpha"), self.p("minimum")
        return math.inf if a <= 1 else a * m / (a - 1)

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """A zero-argument function drawing from this distribution with `rng` (bound methods: fast)."""
        k = self.kind
        if k == "fixed":
            v = self.p("value")
            return lambda: v
        if k == "exponential":
            mean = self.p("mean")
            return partial(rng.expovariate, 1.0 / mean) if mean > 0 else (lambda: 0.0)
        if k == "uniform":
            return partial(rng.uniform, self.p("low"), self.p("high"))
        if k == "lognormal":
            # parameterised by the distribution's own mean and the sigma of the underlying normal
            sigma = self.p("sigma")
            mu = math.log(self.p("mean")) - sigma * sigma / 2
            return partial(rng.lognormvariate, mu, sigma)
        if k == "gamma":
            shape = self.p("shape")
            return partial(rng.gammavariate, shape, self.p("mean") / shape)
        alpha, minimum = self.p("alpha"), self.p("minimum")
        return lambda: minimum * rng.paretovariate(alpha)

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
    required, optional = KINDS[kind]
    unknown = set(value) - set(required) - set(optional) - {"dist"}
    if unknown:
        name = sorted(unknown)[0]
        raise DistError(name, value[name], f"unknown parameter for {kind}; expected {', '.join(required)}")
    params = []
    for name in required:
        if name not in value:
            raise DistError(name, None, f"missing parameter for {kind}", missing=True)
        conv = float if name in ("sigma", "shape", "alpha") else convert
        try:
            v = conv(value[name]) if not isinstance(value[name], bool) else None
        except (units.UnitError, TypeError, ValueError):
            v = None
        if v is None or not math.isfinite(v) or v < 0:
            raise DistError(name, value[name], "must be a finite number >= 0")
        if name in ("sigma",) and v < 0 or name in ("shape", "alpha", "minimum") and v <= 0:
            raise DistError(name, value[name], "must be > 0")
        if kind == "lognormal" and name == "mean" and v <= 0:
            raise DistError(name, value[name], "must be > 0")
        params.append((name, v))
    dist = Dist(kind, tuple(params))
    if kind == "uniform" and dist.p("low") > dist.p("high"):
        raise DistError("high", value["high"], "must be >= low")
    return dist
