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
    """Jobs by state over time: replication 0 bold, every other replication thin in the same colour."""
    fig, ax = plt.subplots(figsize=(8, 4))
    colours = {}
    last = max((rep.samples[-1][0] for rep in results.replications if rep.samples), default=0.0)
    scale, tunit = (3600.0, "h") if last > 3 * 3600 else (1.0, "s")
    for rep in results.replications:
        if not rep.samples:
            continue
        cols = list(zip(*rep.samples))
        t = [x / scale for x in cols[0]]
        for name in ("staging", "client_queue", "wait", "run"):
            first = rep is results.replications[0]
            label = (name.upper() if name in ("wait", "run") else name) if first else None
            line, = ax.plot(t, cols[rep.sample_columns.index(name)], label=label, color=colours.get(name),
                            linewidth=1.5 if first else 0.6, alpha=1.0 if first else 0.5)
            colours.setdefault(name, line.get_color())
    fixed = [g for g in results.scenario.agents if not g.autoscale]
    if fixed and len(fixed) == len(results.scenario.agents):
        ax.axhline(sum(g.count * g.slots for g in fixed), color="black", linestyle="--", linewidth=0.8,
                   label="slots (capacity)")
    ax.set_xlabel(f"simulated time ({tunit})")
    ax.set_ylabel("jobs (count)")
    ax.set_title(f"Jobs by state over time ({len(results.replications)} replications; bold: replication 0)")
    ax.legend(loc="upper left")
    rep = results.replications[0]
    scaled = [c for c in rep.sample_columns if c.startswith("agents.")]
    if scaled and rep.samples:
        ax2 = ax.twinx()
        cols = list(zip(*rep.samples))
        for c in scaled:
            ax2.plot([x / scale for x in cols[0]], cols[rep.sample_columns.index(c)], color="black", linestyle=":",
                     label=f"{c} serving")
        ax2.set_ylabel("agents serving (count)")
        ax2.legend(loc="upper right")
    return _save(fig, out / "states.png")


def wait_cdf(results: Results, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for rep in results.replications[:5]:
        values, cum = rep.wait_cdf
        ax.step(values, cum, where="post", label=f"replication {rep.index}")
    ax.set_xlabel("wait: submit to RUN (s)")
    ax.set_ylabel("fraction of jobs")
    pos = [v for rep in results.replications[:5] for v in rep.wait_cdf[0] if v > 0]
    if pos and max(pos) / min(pos) >= 100:
        ax.set_xscale("log")
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
    for i, g in enumerate(groups):
        vals = results.metrics.get(f"utilisation.{g}", {}).get("values", [])
        ax.plot([i + 0.25] * len(vals), vals, linestyle="none", marker=".", color="black")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("busy slots / slots (fraction)")
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


def draw_all(results: Results, out: str | Path, target=None) -> list[Path]:
    out = Path(out)
    drawn = [states(results, out), wait_cdf(results, out), utilisation(results, out)]
    c = results.scenario.clients
    if c.rpc_cost_poll or c.rpc_cost_stage or c.rpc_cost_run:   # no empty plot
        drawn.append(agent_load(results, out))
    extra = hourly(results, out, target=target)
    return drawn + ([extra] if extra else [])


UNITS = (("wait", "s"), ("queue_wait", "s"), ("turnaround", "s"), ("throughput", "jobs/s"),
         ("polls_per_job", "polls per job"), ("utilisation", "fraction of capacity"), ("link_utilisation", "fraction"),
         ("source_", "fraction"), ("agent_hours", "agent-hours"), ("cost", "price units"), ("bytes", "bytes"),
         ("rpc_load", "CPU s per s"))


def unit_of(metric: str) -> str:
    for prefix, unit in UNITS:
        if metric.startswith(prefix):
            return unit
    return ""


def _log_if_wide(ax, values) -> None:
    """Log scale when the positive values span two decades or more."""
    pos = [v for v in values if v is not None and v == v and v > 0]
    if pos and max(pos) / min(pos) >= 100:
        ax.set_yscale("log")


def sweep_plot(rows: list[dict], key: str, metric: str, out: Path, target=None, prefix: str = "sweep") -> Path:
    """The metric against one varied key: the mean with its 95 % interval, every replication as a
    dot beside it, one line per combination of the other varied keys, the target as a line."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        others = tuple((k, v) for k, v in (r.get("values") or {key: r["value"]}).items() if k != key)
        groups.setdefault(others, []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    seen = []
    for others, rs in groups.items():
        rs = sorted(rs, key=lambda r: (r.get("values") or {key: r["value"]})[key])
        xs = [_x(key, (r.get("values") or {key: r["value"]})[key]) for r in rs]
        ms = [r["metrics"][metric]["mean"] for r in rs]
        lo = [r["metrics"][metric].get("low") for r in rs]
        hi = [r["metrics"][metric].get("high") for r in rs]
        err = [[0.0 if (l is None or m is None or l != l) else max(0.0, m - l) for m, l in zip(ms, lo)],
               [0.0 if (h is None or m is None or h != h) else max(0.0, h - m) for m, h in zip(ms, hi)]]
        label = ", ".join(f"{k}={v}" for k, v in others) or "mean, 95 % interval"
        line = ax.errorbar(xs, [m if m is not None else math.nan for m in ms], yerr=err, marker="o", capsize=3,
                           label=label)
        span = (max(xs) - min(xs)) if len(xs) > 1 else 1.0
        for x, r in zip(xs, rs):
            vals = [v for v in r["metrics"][metric].get("values", []) if v is not None]
            ax.plot([x + 0.015 * span] * len(vals), vals, linestyle="none", marker=".", alpha=0.5,
                    color=line[0].get_color())
            seen += vals
        seen += [m for m in ms if m is not None]
    if target is not None:
        ax.axhline(target.value, color="red", linestyle="--", label=f"target {target}")
        seen.append(target.value)
    _log_if_wide(ax, seen)
    ax.set_xlabel(x_label(key))
    unit = unit_of(metric)
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_title(f"{metric} against {key} (dots: replications)")
    ax.legend(fontsize=8)
    return _save(fig, out / f"{prefix}-{metric}.png")


def hourly(results: Results, out: Path, metric: str = "wait_p95", target=None) -> Path | None:
    """A time-binned metric (run.bin; by hour of day for a daily profile): mean with its 95 %
    interval, the replications as dots, the target (when it is on this metric) as a line."""
    m = results.metrics
    keys = sorted(k for k in m if k.startswith("bin.") and k.endswith("." + metric))
    if not keys:
        return None
    width = results.scenario.run.bin or 1.0
    xs = [int(k.split(".")[1]) * width / 3600 for k in keys]
    fig, ax = plt.subplots(figsize=(8, 4))
    ms = [m[k]["mean"] for k in keys]
    err = [[max(0.0, mu - m[k]["low"]) if m[k].get("low") == m[k].get("low") and m[k].get("low") is not None else 0.0
            for mu, k in zip(ms, keys)],
           [max(0.0, m[k]["high"] - mu) if m[k].get("high") == m[k].get("high") and m[k].get("high") is not None
            and math.isfinite(m[k]["high"]) else 0.0 for mu, k in zip(ms, keys)]]
    ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label="mean, 95 % interval")
    if target is not None and target.metric in (metric, f"{metric}_worst_bin"):
        ax.axhline(target.value, color="red", linestyle="--", label=f"target {target}")
    for k, x in zip(keys, xs):
        vals = m[k]["values"]
        ax.plot([x] * len(vals), vals, linestyle="none", marker=".", color="grey", alpha=0.6)
    _log_if_wide(ax, [v for k in keys for v in m[k]["values"]])
    period = results.scenario.run.bin_period
    ax.set_xlabel("hour of day (h)" if period == 86400 else "submit time bin start (h)")
    ax.set_ylabel(f"{metric} of jobs submitted in the bin (s)")
    ax.set_title(f"{metric} by time (dots: replications)")
    ax.legend()
    return _save(fig, out / f"hourly-{metric}.png")


def _x(key: str, v):
    """A varied value on the x axis: bandwidths in Gbit/s (their axis says so), others as they are."""
    return v * 8 / 1e9 if "bandwidth" in key and isinstance(v, (int, float)) else v


def x_label(key: str) -> str:
    if "bandwidth" in key:
        return f"{key} (Gbit/s)"
    if key.endswith(("count", ".max", ".min")):
        return f"{key} (agents)"
    if key.endswith("slots"):
        return f"{key} (slots per agent)"
    if key.endswith("rate"):
        return f"{key} (jobs/s)"
    return key


def plan_plot(rows: list[dict], key: str, target, out: Path, answer=None, cost: str | None = None,
              unstable=None) -> Path:
    """The plan: the target metric against the value (95 % intervals, replications as dots), the
    target as a line, the answer marked, the unstable values (up to `unstable`) shaded; with
    `cost`, the cost of each value on a second axis."""
    path = out / f"plan-{target.metric}.png"
    fig = plt.figure(figsize=(7, 4.2))
    ax = fig.gca()
    pts = sorted(rows, key=lambda r: r["value"])
    xs = [_x(key, r["value"]) for r in pts]
    ms = [r["metrics"][target.metric]["mean"] for r in pts]
    lo = [r["metrics"][target.metric].get("low") for r in pts]
    hi = [r["metrics"][target.metric].get("high") for r in pts]
    err = [[max(0.0, m - l) if l is not None and l == l else 0.0 for m, l in zip(ms, lo)],
           [max(0.0, h - m) if h is not None and h == h and math.isfinite(h) else 0.0 for m, h in zip(ms, hi)]]
    ax.errorbar(xs, ms, yerr=err, marker="o", linestyle="none", capsize=3, label="mean, 95 % interval")
    for x, r in zip(xs, pts):
        vals = [v for v in r["metrics"][target.metric].get("values", []) if v is not None]
        ax.plot([x] * len(vals), vals, linestyle="none", marker=".", color="grey", alpha=0.5)
    ax.axhline(target.value, color="red", linestyle="--", label=f"target {target}")
    if answer is not None:
        ax.axvline(_x(key, answer), color="green", linestyle=":", label=f"answer {key} = {answer:g}")
    if unstable is not None:
        lo = min([_x(key, unstable)] + xs)
        ax.axvspan(lo - 0.5 if lo == _x(key, unstable) else lo, _x(key, unstable), color="grey", alpha=0.25,
                   label=f"unstable (offered load >= capacity): {key} <= {unstable:g}")
    _log_if_wide(ax, ms + [target.value])
    ax.set_xlabel(x_label(key))
    unit = unit_of(target.metric)
    ax.set_ylabel(f"{target.metric} ({unit})" if unit else target.metric)
    if cost:
        ax2 = ax.twinx()
        cs = [(x, r.get("cost")) for x, r in zip(xs, pts) if r.get("cost") is not None]
        ax2.plot([x for x, _ in cs], [c for _, c in cs], color="purple", marker="s", linestyle="-", label=cost)
        ax2.set_ylabel(f"{cost} ({unit_of(cost) or 'units'})")
        ax2.legend(loc="upper right", fontsize=8)
    ax.set_title(f"plan: {target.metric} against {key}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
