"""What a run's samples cost, and success against that cost (contract 1.1 cost fields).

Cost axes: compute seconds (CPU seconds; GPU seconds where the model held a GPU)
and energy/force evaluations, per target. A sample becomes available at a cost:
for a search, what the search had spent when it first found the structure
(`found_*`); otherwise the cumulated cost of the target's samples up to and
including it, in sample order (sample i of a generative model comes after
samples 0..i-1). The success curve at cost c is the share of ALL targets with a
matched sample available at c; it ends at match@k. For a search it is a lower
bound of what stopping the search at c would give (a structure it found later
may have displaced a match from its k best).
"""

from __future__ import annotations

import math

AXES = {"compute_seconds": ("compute seconds per target (CPU, or GPU where held)", "found_compute_seconds"),
        "energy_evaluations": ("energy/force evaluations per target", "found_evaluations")}
SUMMED = ("seconds", "cpu_seconds", "gpu_seconds", "compute_seconds", "energy_evaluations", "relax_seconds",
          "sampling_seconds")


def _column(frame, name):
    import pandas as pd

    return frame[name].astype("float64") if name in frame else pd.Series(math.nan, index=frame.index)


def recorded(samples) -> bool:
    """True when the run's samples carry contract-1.1 costs (CPU or GPU seconds)."""
    return bool(_column(samples, "cpu_seconds").notna().any() or _column(samples, "gpu_seconds").notna().any())


def sample_costs(samples):
    """One row per sample: its cost, and the cost at which it became available on each axis."""
    frame = samples[["target_id", "sample_index"]].copy()
    for name in ("seconds", "cpu_seconds", "gpu_seconds", "energy_evaluations", "relax_seconds", "sampling_seconds"):
        frame[name] = _column(samples, name)
    frame["compute_seconds"] = frame["gpu_seconds"].fillna(frame["cpu_seconds"])
    frame["found_compute_seconds"] = _column(samples, "found_gpu_seconds").fillna(
        _column(samples, "found_cpu_seconds"))
    frame["found_evaluations"] = _column(samples, "found_evaluations")
    frame = frame.sort_values(["target_id", "sample_index"], kind="stable")
    for axis, (_, found) in AXES.items():
        cumulated = frame.groupby("target_id")[axis].cumsum()
        frame[f"available_{axis}"] = frame[found].fillna(cumulated)
    return frame


def totals(costs, targets: int) -> dict:
    """Sums over the run and means per target (every target counted, produced or not)."""
    out = {}
    for name in SUMMED:
        values = costs[name]
        total = float(values.sum()) if values.notna().any() else None
        out[f"total_{name}"] = total
        out[f"{name}_per_target"] = total / targets if total is not None and targets else None
    return out


def first_match_cost(costs, matched, axis: str):
    """Per matched target, the lowest cost at which one of its matched samples was available."""
    joined = costs.merge(matched, on=["target_id", "sample_index"], how="inner")
    joined = joined[joined["matched"].astype(bool)]
    return joined.groupby("target_id")[f"available_{axis}"].min().dropna()


def success_curve(costs, matched, axis: str, targets: int) -> tuple[list[float], list[float]]:
    """Step curve (x, y): y = share of all targets matched at cost <= x, from 0 to the largest cost per target."""
    firsts = sorted(first_match_cost(costs, matched, axis).tolist())
    spent = costs.groupby("target_id")[axis].sum()
    end = float(spent.max()) if spent.notna().any() and len(spent) else (firsts[-1] if firsts else 0.0)
    xs, ys = [0.0], [0.0]
    for n, cost in enumerate(firsts, 1):
        xs += [cost, cost]
        ys += [ys[-1], n / targets]
    xs.append(max(end, xs[-1]))
    ys.append(ys[-1])
    return xs, ys


def match_at_k(matched, targets: int, k: int) -> list[float]:
    """[match@1, ..., match@k]: share of all targets with a matched sample among their first j samples."""
    hits = matched[matched["matched"].astype(bool)].groupby("target_id")["sample_index"].min()
    return [float((hits < j).sum() / targets) if targets else math.nan for j in range(1, k + 1)]
