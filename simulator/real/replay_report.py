"""The replay's comparison: the same metrics from real and simulated per-job times, table, JSON and plot."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from simulator.output import _clean

METRICS = ("wait_mean", "wait_p50", "wait_p95", "turnaround_mean", "turnaround_p50", "turnaround_p95",
           "throughput", "polls_per_job")
UNITS = {"throughput": "jobs/s", "polls_per_job": "polls"}
COLUMNS = ("index", "agent", "submit", "run_submit", "start", "first", "last", "end", "done_seen", "polls")


def _counted(rows: list[dict], warmup: float, warmup_jobs: int) -> list[dict]:
    return [r for r in rows if r["index"] >= warmup_jobs and r["submit"] >= warmup]


def metrics(rows: list[dict], warmup: float = 0.0, warmup_jobs: int = 0) -> dict:
    """The same definitions for both sides.

    wait = RUN (the agent's journal; in the model the slot start plus the calibrated spawn delay)
    - the client's submission (its StageInFiles call);
    turnaround = the poll that saw DONE - submission; throughput = jobs / (last DONE seen - first
    submission), over all jobs; polls per job = status polls after RunJob up to the DONE one.
    Warm-up jobs (run.warmup, run.warmup_jobs) are left out of wait, turnaround and polls.
    """
    done = [r for r in rows if math.isfinite(r["start"]) and math.isfinite(r["done_seen"])]
    counted = _counted(done, warmup, warmup_jobs)
    wait = np.array([r["start"] - r["submit"] for r in counted])
    turn = np.array([r["done_seen"] - r["submit"] for r in counted])
    out = {}
    for name, values in (("wait", wait), ("turnaround", turn)):
        out[f"{name}_mean"] = float(values.mean()) if len(values) else math.nan
        for q in (50, 95):
            out[f"{name}_p{q}"] = float(np.percentile(values, q)) if len(values) else math.nan
    span = max((r["done_seen"] for r in done), default=math.nan) - min((r["submit"] for r in rows), default=math.nan)
    out["throughput"] = len(done) / span if span > 0 else math.nan
    out["polls_per_job"] = float(np.mean([r["polls"] for r in counted])) if counted else math.nan
    out["jobs_done"] = len(done)
    out["jobs_counted"] = len(counted)
    return out


def compare(real: list[dict], sim: list[dict], warmup: float = 0.0, warmup_jobs: int = 0) -> dict:
    """Both sides' metrics and, per metric, |sim - real| / real."""
    r, s = metrics(real, warmup, warmup_jobs), metrics(sim, warmup, warmup_jobs)
    rel = {k: (abs(s[k] - r[k]) / abs(r[k]) if r[k] and math.isfinite(r[k]) and math.isfinite(s[k]) else math.nan)
           for k in METRICS}
    paired = [(a["start"] - a["submit"]) - (b["start"] - b["submit"]) for a, b in zip(real, sim)
              if math.isfinite(a["start"]) and math.isfinite(b["start"])]
    return {"real": r, "sim": s, "rel_error": rel,
            "paired_wait_diff": {"mean_s": float(np.mean(paired)) if paired else math.nan,
                                 "mean_abs_s": float(np.mean(np.abs(paired))) if paired else math.nan}}


def _fmt(name: str, v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    if name in UNITS:
        return f"{v:.3f}" if name == "throughput" else f"{v:.2f}"
    return f"{v:.3f} s"


def _err(e: float) -> str:
    return f"{e:.1%}" if math.isfinite(e) else "n/a"


def markdown(report: dict, title: str = "") -> str:
    """The table: real, simulated with the calibration before the run and, when there is one, with the
    turnover measured alongside it; then the slot overheads and the hindsight check."""
    side = report.get("alongside") or {}
    both = "rel_error" in side
    lines = [f"**{title}**", ""] if title else []
    if both:
        lines += ["| metric | real | simulated, calibrated before | error | simulated, calibrated alongside | error |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
    else:
        lines += ["| metric | real | simulated | relative error |", "| --- | ---: | ---: | ---: |"]
    for k in METRICS:
        unit = f" ({UNITS[k]})" if k in UNITS else ""
        row = f"| {k}{unit} | {_fmt(k, report['real'][k])} | {_fmt(k, report['sim'][k])} | {_err(report['rel_error'][k])} |"
        if both:
            row += f" {_fmt(k, side['sim'][k])} | {_err(side['rel_error'][k])} |"
        lines.append(row)
    att, diag = report.get("attribution"), report.get("diagnostics")
    if att and diag:
        errs = ", ".join(f"{k} {_err(att['rel_error'][k])}" for k in ("wait_mean", "wait_p95", "throughput"))
        along = f", alongside the run {side['turnover']['mean_s'] * 1e3:.0f} ms" if both else ""
        lines += ["", f"Slot overhead per job: calibrated before the run {diag['calibrated_slot_overhead_s'] * 1e3:.0f} ms"
                      f"{along}, the real run's own {att['slot_overhead_s'] * 1e3:.0f} ms. Simulated with the real "
                      f"run's own overhead (a check after the fact, not a prediction): {errs}."]
    return "\n".join(lines) + "\n"


def curves(rows: list[dict], grid: np.ndarray) -> dict[str, np.ndarray]:
    """WAIT, RUN and DONE counts on `grid`: WAIT from submission to RUN, RUN until DONE at the agent,
    DONE (cumulative) from the poll that saw it."""
    def count(a, b):
        a = np.sort(np.array([r[a] for r in rows if math.isfinite(r[a])]))
        n = np.searchsorted(a, grid, side="right")
        if b is None:
            return n
        b = np.sort(np.array([r[b] for r in rows if math.isfinite(r[b])]))
        return n - np.searchsorted(b, grid, side="right")
    return {"WAIT": count("submit", "start"), "RUN": count("start", "end"), "DONE": count("done_seen", None)}


def plot(real: list[dict], sim: list[dict], path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    end = max(r["done_seen"] for r in real + sim if math.isfinite(r["done_seen"]))
    grid = np.linspace(0.0, end, 1000)
    cr, cs = curves(real, grid), curves(sim, grid)
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for ax, name in zip(axes, ("WAIT", "RUN", "DONE")):
        ax.plot(grid, cr[name], label=f"{name} real", color="tab:blue")
        ax.plot(grid, cs[name], label=f"{name} simulated", color="tab:orange", linestyle="--")
        ax.set_ylabel("jobs")
        ax.legend(loc="upper left")
    axes[0].set_title(title)
    axes[-1].set_xlabel("seconds from the first arrival")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_jobs(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r.get(c) for c in COLUMNS])


def write(report: dict, real: list[dict], sim: list[dict], out: Path) -> list[Path]:
    out = Path(out)
    write_jobs(real, out / "real-jobs.csv")
    write_jobs(sim, out / "sim-jobs.csv")
    (out / "comparison.json").write_text(json.dumps(_clean(report), indent=1) + "\n", encoding="utf-8")
    title = f"{report.get('jobs', len(real))} jobs: real (solid) vs simulated (dashed)"
    (out / "comparison.md").write_text(markdown(report, title), encoding="utf-8")
    plot(real, sim, out / "states.png", title)
    return [out / n for n in ("real-jobs.csv", "sim-jobs.csv", "comparison.json", "comparison.md", "states.png")]
