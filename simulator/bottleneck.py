"""Which resource binds: every modelled resource's utilisation, where the wait goes, a one-line verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass

PARTS = (("client_queue", "the client queue"), ("staging", "staging"), ("wait", "WAIT on the agent"))
BUSY = 0.8          # a resource this busy is named even when it does not make the wait
SATURATED = 0.7     # below this, the part of the wait it explains is service time, not queueing


@dataclass(frozen=True)
class Resource:
    """One modelled resource and its utilisation over the statistics window (0..1)."""

    key: str          # the summary metric it comes from
    label: str
    kind: str         # slots, source, link, rpc
    utilisation: float


def resources(m: dict[str, float]) -> list[Resource]:
    """Every resource the model has, from a run's flat metrics (means over replications are fine)."""
    out = []
    for key, value in m.items():
        if value is None or value != value:
            continue
        if key.startswith("utilisation."):
            out.append(Resource(key, f"the slots of group {key[12:]}", "slots", value))
        elif key.startswith("rpc_load_max."):
            out.append(Resource(key, f"the RPC CPU of the busiest agent of {key[13:]}", "rpc", value))
        elif key.startswith("link_utilisation."):
            out.append(Resource(key, f"the agent links of {key[17:]} (mean)", "link", value))
        elif key.startswith("link_utilisation_max."):
            out.append(Resource(key, f"the busiest agent link of {key[21:]}", "link", value))
        elif key == "source_utilisation":
            out.append(Resource(key, "the file source", "source", value))
    return out


def wait_split(m: dict[str, float]) -> dict[str, float]:
    """Mean seconds of a job's wait (submit to RUN) spent in each part: client queue, staging
    (StageInFiles and RunJob), WAIT on the agent. Empty when the run has no split."""
    return {p: m[f"wait_split.{p}"] for p, _ in PARTS if m.get(f"wait_split.{p}") is not None}


@dataclass(frozen=True)
class Verdict:
    binding: Resource | None
    part: str | None       # the part of the wait that dominates
    share: float           # its share of the mean wait
    text: str


def verdict(m: dict[str, float]) -> Verdict:
    """Name the binding resource: the busiest network resource when staging makes most of the
    wait, the busiest slot group when the queues (client or WAIT) do; an agent's RPC CPU at or
    above 100 % binds whatever the wait (the model does not slow jobs for it, a real agent would)."""
    res = resources(m)
    split = wait_split(m)
    wait = sum(v for v in split.values() if v == v)
    busiest = max(res, key=lambda r: r.utilisation, default=None)
    rpc = max((r for r in res if r.kind == "rpc"), key=lambda r: r.utilisation, default=None)
    if not split or not wait > 0:
        if busiest is None:
            return Verdict(None, None, 0.0, "no resource modelled")
        return Verdict(None, None, 0.0, f"nothing binds: jobs do not wait; the busiest resource is "
                                        f"{busiest.label} at {_pct(busiest.utilisation)}")
    part, seconds = max(split.items(), key=lambda kv: kv[1])
    share = seconds / wait
    kinds = ("source", "link") if part == "staging" else ("slots",)
    cands = [r for r in res if r.kind in kinds]
    binding = max(cands, key=lambda r: r.utilisation, default=None)
    if part == "staging" and binding is not None and binding.kind == "link" and binding.key.startswith("link_utilisation."):
        # the mean hides a hot link (cache affinity): name the busiest one if it is the busier
        hot = [r for r in cands if r.key == "link_utilisation_max." + binding.key[17:]]
        if hot and hot[0].utilisation >= BUSY > binding.utilisation:
            binding = hot[0]
    saturated = m.get("source_saturated")
    src = [r for r in res if r.kind == "source"]
    if part == "staging" and src and saturated is not None and saturated >= 0.3 and binding is not src[0]:
        # busy on average or not, a source that limited transfers this often is what staging waits for
        binding = src[0]
    if rpc is not None and rpc.utilisation >= 1.0:
        binding = rpc
    label = dict(PARTS)[part]
    limiting = binding is not None and binding.kind == "source" and (saturated or 0) >= 0.3
    if binding is not None and binding.utilisation < SATURATED and binding.kind != "rpc" and not limiting:
        # waits without a busy resource are service times (a transfer at link speed, RPC latency)
        name = f"{busiest.label} at {_pct(busiest.utilisation)}" if busiest else "none"
        return Verdict(None, part, share, f"no resource is saturated (the busiest: {name}): {label} makes "
                                          f"{_pct(share)} of the wait (mean {wait:.3g} s)")
    if binding is None:
        text = f"{label} makes {_pct(share)} of the wait (mean {seconds:.3g} s of {wait:.3g} s)"
    else:
        text = (f"{binding.label} {'is' if binding.kind != 'slots' else 'are'} {_pct(binding.utilisation)} busy: "
                f"{label} makes {_pct(share)} of the wait")
        if limiting:
            text = text.replace(" busy:", f" busy and limited transfers {_pct(saturated)} of the time:", 1)
    extra = [r for r in res if r is not binding and r.utilisation >= BUSY]
    if extra:
        text += "; also busy: " + ", ".join(f"{r.label} {_pct(r.utilisation)}" for r in extra)
    return Verdict(binding, part, share, text)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if math.isfinite(x) else "n/a"


def means(metrics: dict[str, dict]) -> dict[str, float]:
    """Flat means of a Results.metrics table, for the functions above."""
    return {k: v.get("mean") if isinstance(v, dict) else v for k, v in metrics.items()}


def table(m: dict[str, float]) -> list[str]:
    """Lines: each resource's utilisation, then the wait split."""
    lines = [f"  {r.label:<48} {_pct(r.utilisation):>6}" for r in resources(m)]
    split = wait_split(m)
    wait = sum(v for v in split.values() if v == v)
    if split:
        parts = ", ".join(f"{dict(PARTS)[p]} {v:.3g} s ({_pct(v / wait) if wait > 0 else 'n/a'})" for p, v in split.items())
        lines.append(f"  wait split: {parts}")
    return lines


TIPPED = 0.9       # a replication "saturated" a resource at this utilisation (or a source limiting >= 30 %)


def saturated(m: dict[str, float]) -> frozenset[str]:
    """The resources one replication saturated: utilisation >= TIPPED, or the source limiting
    transfers at least 30 % of the window."""
    out = {r.label for r in resources(m) if r.utilisation >= TIPPED}
    if (m.get("source_saturated") or 0.0) >= 0.3:
        out.add("the file source")
    return frozenset(out)


def split_text(replications) -> str:
    """Replications that disagree beyond noise, grouped by the resources each saturated, e.g.
    '2 of 4 replications saturated the file source (...); 2 of 4 saturated nothing (...)'; empty
    when they agree (a resource at 68 % in one and 71 % in another is noise, not a split)."""
    groups: dict[frozenset, list] = {}
    for r in replications:
        groups.setdefault(saturated(r.metrics), []).append(r)
    if len(groups) < 2:
        return ""
    n = len(replications)
    parts = []
    for sat, reps in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        what = " and ".join(sorted(sat)) if sat else "nothing"
        parts.append(f"{len(reps)} of {n} replications saturated {what} ({verdict(reps[0].metrics).text})")
    return "replications disagree: " + "; ".join(parts)
