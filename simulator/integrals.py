"""Time integrals of a run: jobs in the system (Little's law) and busy slots per group (utilisation)."""
from __future__ import annotations


class Integrals:
    """Piecewise-constant counts integrated over time, with snapshots at the statistics window's edges.

    `in_system` (submitted, not ended) gives Little's L; `busy[g]` (slots running a job in group g)
    gives utilisation. Each count keeps its own last-change time, so a change costs O(1).
    """

    def __init__(self, groups: int):
        self.in_system = 0
        self.ns_area = self.ns_t = 0.0
        self.submit_sum = self.end_sum = 0.0   # Little's identity over the whole run
        self.busy = [0] * groups
        self.busy_area = [0.0] * groups
        self.busy_t = [0.0] * groups

    def job_in(self, now: float) -> None:
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now
        self.in_system += 1
        self.submit_sum += now

    def job_out(self, now: float) -> None:
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now
        self.in_system -= 1
        self.end_sum += now

    def busy_step(self, g: int, now: float, delta: int) -> None:
        self.busy_area[g] += self.busy[g] * (now - self.busy_t[g])
        self.busy_t[g] = now
        self.busy[g] += delta

    def integrate(self, now: float) -> None:
        """Bring every integral up to `now` (before reading or snapshotting them)."""
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now
        for g in range(len(self.busy)):
            self.busy_step(g, now, 0)

    def snapshot(self, now: float) -> tuple[float, list[float]]:
        self.integrate(now)
        return self.ns_area, list(self.busy_area)

    def identity_error(self, now: float) -> float:
        """Little's law as an identity over [0, now]: the integral of the number of jobs in the
        system equals the sum of their (possibly unfinished) sojourns; exact up to rounding."""
        self.ns_area += self.in_system * (now - self.ns_t)
        self.ns_t = now
        sojourns = self.end_sum + self.in_system * now - self.submit_sum
        return abs(self.ns_area - sojourns) / max(sojourns, 1e-300) if sojourns > 0 else 0.0
