"""A client's poll schedule, solved arithmetically instead of simulating every poll."""
from __future__ import annotations

import bisect
import math


class PollSchedule:
    """Polls at RunJob + g1, g2, ...: intervals start at `interval`, grow by `backoff`, cap at `maximum`.

    The first poll at or after a time T is found by bisection over the growing phase and one
    division over the capped phase, so a job costs O(log k) however many polls it makes; the
    polls are still counted exactly (and their RPC cost charged to the agent). A poll at exactly
    T sees DONE (the tie-breaking rule runs job ends before polls). interval = 0 turns polling
    off: the client is told at once (the queueing-theory limit), with no polls.
    """

    def __init__(self, interval: float, backoff: float = 1.0, maximum: float | None = None):
        self.interval = interval
        self.off = interval <= 0
        if self.off:
            return
        cap = max(interval, maximum if maximum is not None else interval)
        self.cap = cap
        offsets, step, t = [], interval, 0.0
        while True:
            step = min(step, cap)
            t += step
            offsets.append(t)
            if step >= cap or backoff <= 1.0 or len(offsets) > 10_000:
                break
            step *= backoff
        self.cap = step
        self.offsets = offsets

    def first_at_or_after(self, origin: float, t: float) -> tuple[float, int]:
        """(time of the first poll at or after t, number of polls up to and including it)."""
        if self.off:
            return (max(t, origin), 0)
        delta = t - origin
        offsets = self.offsets
        last = offsets[-1]
        if delta <= last:
            i = bisect.bisect_left(offsets, delta)
            p = origin + offsets[i]
            if i and origin + offsets[i - 1] >= t:   # rounding at a boundary: settle on absolute times
                i -= 1
                p = origin + offsets[i]
            elif p < t:
                i += 1
                p = self._at(origin, i)
            return (p, i + 1)
        cap, k = self.cap, len(offsets)
        j = math.ceil((delta - last) / cap)
        p = origin + last + j * cap
        if j >= 1 and origin + last + (j - 1) * cap >= t:   # j = 0: the last growing poll
            j -= 1
            p = origin + last + j * cap
        elif p < t:
            j += 1
            p = origin + last + j * cap
        return (p, k + j)

    def _at(self, origin: float, i: int) -> float:
        """Time of poll number i + 1."""
        k = len(self.offsets)
        if i < k:
            return origin + self.offsets[i]
        return origin + self.offsets[-1] + (i - k + 1) * self.cap

    def times(self, origin: float, t: float) -> list[float]:
        """Every poll time up to the first at or after t (for tests and traces; O(polls))."""
        if self.off:
            return []
        out, i = [], 0
        while True:
            p = self._at(origin, i)
            out.append(p)
            if p >= t:
                return out
            i += 1
