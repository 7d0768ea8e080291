"""Backoff for polling and retries: exponential, capped, with jitter from an injectable random.Random."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


def _positive(name: str, value: object, minimum: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Backoff:
    """Delays that grow from `initial` by `multiplier` per attempt up to `maximum` seconds.

    `jitter` (0..1) is the fraction of each delay that is random: attempt n waits
    d * (1 - jitter * U) with d = min(maximum, initial * multiplier**n) and U uniform in [0, 1)
    drawn from `rng` (a random.Random; a fresh unseeded one when None). Jitter spreads the polls
    of many clients that an agent restart synchronised; a seeded rng makes a test replayable.
    """

    initial: float = 0.05
    maximum: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        _positive("initial", self.initial, strict=False)  # 0: poll back to back (Backoff.fixed(0))
        _positive("maximum", self.maximum, strict=False)
        if self.maximum < self.initial:
            raise ValueError(f"maximum must be >= initial ({self.initial!r}), got {self.maximum!r}")
        _positive("multiplier", self.multiplier, 1.0, strict=False)
        if _positive("jitter", self.jitter, 0.0, strict=False) > 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        if self.rng is None:
            object.__setattr__(self, "rng", random.Random())
        elif not isinstance(self.rng, random.Random):
            raise TypeError(f"rng must be a random.Random, got {self.rng!r}")

    @classmethod
    def fixed(cls, interval: float) -> "Backoff":
        """The same delay every time, no jitter (the old fixed poll_interval)."""
        return cls(initial=interval, maximum=interval, multiplier=1.0, jitter=0.0)

    def ceiling(self, attempt: int) -> float:
        """The delay of attempt `attempt` (0 = the first) before jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        # multiplier**attempt overflows for large attempts; the cap is reached long before
        if self.initial == 0 or self.multiplier == 1:
            return self.initial if self.multiplier == 1 else 0.0
        steps = math.log(self.maximum / self.initial, self.multiplier)
        return self.maximum if attempt > steps else min(self.maximum, self.initial * self.multiplier ** attempt)

    def delay(self, attempt: int) -> float:
        """The delay before retry or poll number `attempt` + 1, jitter applied."""
        ceiling = self.ceiling(attempt)
        if not self.jitter:
            return ceiling
        return ceiling * (1.0 - self.jitter * self.rng.random())  # type: ignore[union-attr]
