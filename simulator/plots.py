"""PNG plots of a run, drawn with matplotlib's Agg backend (no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from simulator.api import Results  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def states(results: Results, out: Path) -> Path:
    rep = results.replications[0]
    fig, ax = plt.subplots(figsize=(8, 4))
    if rep.samples:
        cols = list(zip(*rep.samples))
        t = cols[0]
        for name in ("staging", "client_queue", "wait", "run"):
            ax.plot(t, cols[rep.sample_columns.index(name)], label=name.upper() if name in ("wait", "run") else name)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("jobs")
    ax.set_title("Jobs by state over time (replication 0)")
    ax.legend()
    return _save(fig, out / "states.png")


def wait_cdf(results: Results, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for rep in results.replications[:5]:
        values, cum = rep.wait_cdf
        ax.step(values, cum, where="post", label=f"replication {rep.index}")
    ax.set_xlabel("wait: submit to RUN (s)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("Wait CDF")
    ax.legend()
    return _save(fig, out / "wait-cdf.png")


def utilisation(results: Results, out: Path) -> Path:
    groups = [g.name for g in results.scenario.agents]
    means, errs = [], []
    for g in groups:
        m = results.metrics.get(f"utilisation.{g}", {})
        means.append(m.get("mean", math.nan))
        hw = m.get("half_width", math.nan)
        errs.append(0.0 if hw is None or not math.isfinite(hw) else hw)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(groups, means, yerr=errs, capsize=4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("busy slots / slots")
    ax.set_title("Utilisation per agent group (95 % CI)")
    return _save(fig, out / "utilisation.png")


def agent_load(results: Results, out: Path) -> Path:
    rep = results.replications[0]
    counts = {g.name: g.count for g in results.scenario.agents}
    fig, ax = plt.subplots(figsize=(8, 4))
    for g, bins in rep.rpc_bins.items():
        t = [i * rep.bin_width for i in range(len(bins))]
        ax.plot(t, [b / (rep.bin_width * counts[g]) for b in bins], label=g)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("RPC CPU seconds per second per agent")
    ax.set_title("Agent load from polls, StageInFiles and RunJob (replication 0)")
    ax.legend()
    return _save(fig, out / "agent-load.png")


def draw_all(results: Results, out: str | Path) -> list[Path]:
    out = Path(out)
    return [states(results, out), wait_cdf(results, out), utilisation(results, out), agent_load(results, out)]


def sweep_plot(rows: list[dict], key: str, metric: str, out: Path) -> Path:
    """The metric against the varied value, with its 95 % CI as error bars."""
    xs = [r["value"] for r in rows]
    ms = [r["metrics"][metric]["mean"] for r in rows]
    hw = [r["metrics"][metric]["half_width"] for r in rows]
    hw = [0.0 if h is None or not math.isfinite(h) else h for h in hw]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(xs, ms, yerr=hw, marker="o", capsize=3)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {key} (95 % CI)")
    return _save(fig, out / f"sweep-{metric}.png")
