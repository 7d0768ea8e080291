"""Analytic checks: the simulator against Erlang C, M/M/1 state probabilities and Little's law."""
from __future__ import annotations

import math
from dataclasses import dataclass

from simulator import analytic
from simulator.api import Results, run
from simulator.engine import Simulation
from simulator.scenario import Scenario

# Which configurations reproduce M/M/c (Erlang C assumes ONE shared FIFO queue):
#   one_agent      1 agent x c slots: the agent's own FIFO is the shared queue.
#   central_queue  c agents x 1 slot, clients.dispatch = "when_free": the client keeps the FIFO
#                  and hands a job to an agent only when it has a free slot.
# Not M/M/c:
#   per_agent      c agents x 1 slot, dispatch on arrival to the least-loaded agent: a job that
#                  joins a busy agent's queue waits there even when another agent frees first
#                  (join-the-shortest-queue waits longer than Erlang C).
LAYOUTS = ("one_agent", "central_queue", "per_agent")


def mmc_scenario(lam: float, mu: float, c: int, layout: str = "one_agent", *, jobs: int = 20000,
                 warmup_jobs: int | None = None, replications: int = 5, seed: int = 1) -> Scenario:
    """An M/M/c scenario: Poisson arrivals, exponential runtimes, polling, staging and RPC latency off."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    agents = {"count": 1, "slots": c} if layout == "one_agent" else {"count": c, "slots": 1}
    return Scenario.from_dict({
        "agents": [agents],
        "workload": {"arrivals": "poisson", "rate": lam, "runtime": {"dist": "exponential", "mean": 1 / mu}},
        "clients": {"poll_interval": 0, "policy": "least_loaded",
                    "dispatch": "when_free" if layout == "central_queue" else "on_arrival"},
        "run": {"jobs": jobs, "warmup_jobs": jobs // 10 if warmup_jobs is None else warmup_jobs,
                "replications": replications, "seed": seed},
    })


@dataclass
class Check:
    """One row of the validation table: a simulated quantity against its exact value."""

    name: str
    layout: str
    quantity: str
    theory: float
    mean: float
    low: float
    high: float

    @property
    def rel_error(self) -> float:
        return abs(self.mean - self.theory) / abs(self.theory) if self.theory else abs(self.mean)

    @property
    def in_ci(self) -> bool:
        return self.low <= self.theory <= self.high

    @property
    def ok(self) -> bool:
        """Within the simulation's own 95 % CI, or within 5 % of theory."""
        return self.in_ci or self.rel_error <= 0.05


def _check(name: str, layout: str, quantity: str, theory: float, results: Results, metric: str) -> Check:
    m = results.metrics[metric]
    return Check(name, layout, quantity, theory, m["mean"], m["low"], m["high"])


def erlang_checks(case: tuple, layout: str = "one_agent", *, jobs: int = 20000, replications: int = 5,
                  seed: int = 1, workers: int = 1) -> tuple[list[Check], Results]:
    name, lam, mu, c, _ = case
    res = run(mmc_scenario(lam, mu, c, layout, jobs=jobs, replications=replications, seed=seed), workers=workers)
    checks = [
        _check(name, layout, "Wq", analytic.mmc_wait(lam, mu, c), res, "wait_mean"),
        _check(name, layout, "P(wait)", analytic.erlang_c(lam, mu, c), res, "p_wait"),
        _check(name, layout, "utilisation", lam / (c * mu), res, "utilisation.group0"),
    ]
    return checks, res


class StateTimer:
    """A tracer that integrates the time spent with n jobs in the system (submit to end)."""

    def __init__(self, start: float = 0.0):
        self.n = 0
        self.t = 0.0
        self.start = start
        self.time_at: dict[int, float] = {}

    def __call__(self, now: float, kind: str, job) -> None:
        if kind == "start":
            return
        if now > self.start:
            t0 = max(self.t, self.start)
            self.time_at[self.n] = self.time_at.get(self.n, 0.0) + (now - t0)
        self.t = now
        self.n += 1 if kind == "submit" else -1

    def probabilities(self) -> dict[int, float]:
        total = sum(self.time_at.values())
        return {n: v / total for n, v in sorted(self.time_at.items())}


def mm1_checks(lam: float = 0.5, mu: float = 1.0, *, jobs: int = 40000, replications: int = 5,
               seed: int = 1, states: int = 5) -> list[Check]:
    """P(N = n) of M/M/1 for n < states, each with a CI over replications."""
    sc = mmc_scenario(lam, mu, 1, jobs=jobs, replications=replications, seed=seed)
    per_n: dict[int, list[float]] = {n: [] for n in range(states)}
    for r in range(replications):
        timer = StateTimer(start=0.0)
        Simulation(sc, r, tracer=timer).run()
        probs = timer.probabilities()
        for n in per_n:
            per_n[n].append(probs.get(n, 0.0))
    from simulator.stats import confidence_interval
    out = []
    for n, values in per_n.items():
        ci = confidence_interval(values)
        out.append(Check(f"M/M/1 rho={lam / mu:g}", "one_agent", f"P(N={n})",
                         analytic.mm1_state_probability(lam, mu, n), ci["mean"], ci["low"], ci["high"]))
    return out


def little_check(results: Results, name: str, layout: str) -> Check:
    m = results.metrics["little_L"]
    lw = results.metrics["little_lambda_W"]["mean"]
    return Check(name, layout, "Little L = lambda W", lw, m["mean"], m["low"], m["high"])


def table(checks: list[Check]) -> str:
    head = f"{'case':<18} {'layout':<14} {'quantity':<20} {'theory':>10} {'simulated':>10} {'95% CI':>23} {'err':>7}  ok"
    lines = [head, "-" * len(head)]
    for c in checks:
        ci = f"[{c.low:.4g}, {c.high:.4g}]" if math.isfinite(c.low) else "n/a"
        lines.append(f"{c.name:<18} {c.layout:<14} {c.quantity:<20} {c.theory:>10.4g} {c.mean:>10.4g} {ci:>23} "
                     f"{100 * c.rel_error:>6.2f}%  {'yes' if c.ok else 'NO'}")
    return "\n".join(lines)


def single_server(lam: float, runtime: dict, *, arrivals: str = "poisson", jobs: int = 20000, replications: int = 5,
                  seed: int = 1) -> Scenario:
    """One agent with one slot, polling, staging and latency off: M/G/1 or D/M/1 and the like."""
    return Scenario.from_dict({
        "agents": [{"count": 1, "slots": 1}],
        "workload": {"arrivals": arrivals, "rate": lam, "runtime": runtime},
        "clients": {"poll_interval": 0},
        "run": {"jobs": jobs, "warmup_jobs": jobs // 10, "replications": replications, "seed": seed},
    })


# M/G/1 cases: (name, lambda, runtime, mean, cs^2)
MG1_CASES = (
    ("M/G/1 gamma k=2", 0.7, {"dist": "gamma", "shape": 2.0, "mean": 1.0}, 1.0, 0.5),
    ("M/G/1 lognormal", 0.6, {"dist": "lognormal", "mean": 1.0, "sigma": 1.0}, 1.0, math.e - 1),
)


def mg1_checks(*, jobs: int = 20000, replications: int = 5, seed: int = 1, workers: int = 1) -> list[Check]:
    """Pollaczek-Khinchine: Wq = rho E[S] (1 + cs^2) / (2 (1 - rho))."""
    out = []
    for name, lam, rt, mean, scv in MG1_CASES:
        res = run(single_server(lam, rt, jobs=jobs, replications=replications, seed=seed), workers=workers)
        out.append(_check(name, "one_agent", "Wq (P-K)", analytic.pollaczek_khinchine(lam, mean, scv), res, "wait_mean"))
    return out


def gim1_checks(*, jobs: int = 20000, replications: int = 5, seed: int = 1, workers: int = 1) -> list[Check]:
    """GI/M/1 with deterministic arrivals (D/M/1): sigma = exp(-mu (1 - sigma) / lambda);
    Wq = sigma / (mu (1 - sigma)) and P(wait) = sigma."""
    out = []
    for lam in (0.7, 0.9):
        mu = 1.0
        sigma = analytic.gim1_sigma(lambda s, lam=lam: math.exp(-s / lam), mu)
        res = run(single_server(lam, {"dist": "exponential", "mean": 1 / mu}, arrivals="deterministic", jobs=jobs,
                                replications=replications, seed=seed), workers=workers)
        name = f"D/M/1 rho={lam:g}"
        out.append(_check(name, "one_agent", "Wq (GI/M/1)", sigma / (mu * (1 - sigma)), res, "wait_mean"))
        out.append(_check(name, "one_agent", "P(wait) = sigma", sigma, res, "p_wait"))
    return out


def unstable_plan_check(seed: int = 1) -> Check:
    """A plan whose only value has offered load 1 (4 one-slot agents, 2 jobs/s of 2 s) must answer
    'unstable' without simulating it; 1 in the table means it did."""
    from simulator.sweep import parse_target, plan
    sc = Scenario.from_dict({
        "agents": [{"count": 1, "slots": 1}],
        "workload": {"rate": 2.0, "runtime": {"dist": "exponential", "mean": 2.0}},
        "clients": {"poll_interval": 0}, "run": {"duration": 600, "seed": seed, "replications": 2},
    })
    result = plan(sc, "agents.count", parse_target("p95_wait<=1000s"), low=4, high=4)
    ok = result.value is None and result.points[4].status == "unstable" and result.points[4].results is None
    return Check("plan at rho=1", "one_agent", "answers unstable", 1.0, float(ok), float(ok), float(ok))
