"""Writes a run's output folder: summary.json, states-r*.csv, agent-load-r*.csv and the plots."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from simulator import bottleneck
from simulator.api import Results


def _clean(value):
    """JSON without NaN/inf (strict parsers reject them): non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def summary_dict(results: Results) -> dict:
    from simulator import diagnose, stability
    sc = results.scenario
    flat = bottleneck.means(results.metrics)
    verdict = bottleneck.verdict(flat)
    return _clean({
        **diagnose.summary(results, stability.analyse(sc)),
        "scenario": sc.data,
        "replications": len(results.replications),
        "seed": sc.run.seed,
        "confidence": ("95 % interval over replications (null with one replication): Student t, but for "
                       "waits and turnarounds Cox's log-normal interval (method cox-log; never below 0), "
                       "shares clipped to [0, 1] (-clipped), batch means over one run (batch-means) with one "
                       "replication or replications that are the same run; see docs/SIMULATOR.md"),
        "verdict": verdict.text,
        "binding": verdict.binding.key if verdict.binding else None,
        "resources": {r.key: r.utilisation for r in bottleneck.resources(flat)},
        "wait_split": bottleneck.wait_split(flat),
        "metrics": results.metrics,
    })


def write(results: Results, out: str | Path, plots: bool = True) -> list[Path]:
    """Write everything but the per-job CSVs (those were streamed during the run)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json"]
    (out / "summary.json").write_text(json.dumps(summary_dict(results), indent=2) + "\n", encoding="utf-8")
    for rep in results.replications:
        path = out / f"states-r{rep.index}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(rep.sample_columns)
            w.writerows(rep.samples)
        written.append(path)
        path = out / f"agent-load-r{rep.index}.csv"
        groups = list(rep.rpc_bins)
        n = max((len(v) for v in rep.rpc_bins.values()), default=0)
        counts = {g.name: g.count for g in results.scenario.agents}
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["time"] + [f"rpc_load.{g}" for g in groups])
            for i in range(n):
                row = [round(i * rep.bin_width, 9)]
                for g in groups:
                    bins = rep.rpc_bins[g]
                    row.append(bins[i] / (rep.bin_width * counts[g]) if i < len(bins) else 0.0)
                w.writerow(row)
        written.append(path)
        if rep.links:
            path = out / f"links-r{rep.index}.csv"
            with open(path, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["agent", "group", "bytes", "utilisation"])
                w.writerows(rep.links)
            written.append(path)
    if plots:
        from simulator import plots as plotting
        written += plotting.draw_all(results, out)
    return written
