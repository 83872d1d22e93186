"""The report's "Success against cost" section (CSP): match rate against compute seconds and energy
evaluations per target, one line per run, the @k curve, and what each line cost in total on which machine.

Costs are the per-sample fields of contract 1.1 (orchestrator.cost); runs made before it are named
and left out of the cost axes.
"""

from __future__ import annotations

import json
import math

from .. import cost
from . import html
from .figures import Plot, _finish, colour, new_figure


def _matched(run):
    if run.metrics is None or "matched" not in run.metrics:
        return None
    return run.metrics[["target_id", "sample_index", "matched"]]


def _targets(run) -> int:
    if run.truths is not None:
        return len(run.truths)
    return int(run.entry.targets or run.samples["target_id"].nunique())


def machine(run) -> dict:
    """CPU model, usable CPUs and load averages (1 min at shard start and end, 15 min at the end) of its shards."""
    hardware, loads, fifteen = {}, [], []
    for path in sorted(run.entry.path.glob("shards/*/out/manifest.json")):
        try:
            runtime = json.loads(path.read_text()).get("runtime", {})
        except (OSError, ValueError):
            continue
        hardware = hardware or runtime.get("hardware") or {}
        for key in ("load_start", "load_end"):
            if runtime.get(key):
                loads.append(runtime[key][0])
        if runtime.get("load_end"):
            fifteen.append(runtime["load_end"][2])
    host = run.entry.info.get("host") or {}
    return {"cpu_model": hardware.get("cpu_model") or host.get("cpu_model"),
            "cpus": hardware.get("usable_cpus"), "logical_cpus": hardware.get("logical_cpus") or host.get("cpus"),
            "load": (min(loads), max(loads)) if loads else None, "load15": max(fifteen) if fifteen else None}


def relaxation_cost(run) -> str:
    """What `gencsp relax` spent on the run's samples (wall seconds shared per batch, FIRE steps), if it ran."""
    import pandas as pd

    parts = []
    for folder in sorted(run.entry.path.glob("relax/*/")):
        table = folder / "relaxed.parquet"
        if table.is_file():
            frame = pd.read_parquet(table, columns=["seconds", "steps"])
            parts.append(f"{folder.name}: {len(frame)} structures, {frame['seconds'].sum():,.0f} s wall, "
                         f"{int(frame['steps'].sum()):,} steps")
    return "; ".join(parts) or "none"


def _load_text(info: dict) -> str:
    if not info["load"]:
        return "not recorded"
    low, high = info["load"]
    return f"{low:.1f}–{high:.1f} (1 min), {info['load15']:.1f} (15 min) on {info['logical_cpus']} CPUs"


def _series(runs):
    """(run, colour, costs, matched, targets) of the evaluated runs with recorded costs; and those without."""
    shown, missing = [], []
    for i, run in enumerate(runs):
        matched = _matched(run)
        if matched is None:
            continue
        if not cost.recorded(run.samples):
            missing.append(run.label)
            continue
        shown.append((run, colour(i), cost.sample_costs(run.samples), matched, _targets(run)))
    return shown, missing


def _total_text(run, costs, targets) -> str:
    total = cost.totals(costs, targets)
    unit = "GPU" if total["total_gpu_seconds"] else "CPU"
    seconds = total["total_gpu_seconds"] or total["total_cpu_seconds"] or 0.0
    evaluations = total["total_energy_evaluations"]
    evals = f", {evaluations:,.0f} evaluations" if evaluations else ""
    return f"{run.label}: {seconds:,.0f} {unit} s{evals} over {targets} targets"


def success_plot(runs, prefix: str) -> tuple[Plot | None, list]:
    shown, missing = _series(runs)
    if not shown:
        return None, missing
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(9.0, 3.8), dpi=100, layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    notes = []
    for ax, axis in zip(axes, cost.AXES, strict=True):
        curves = []
        for run, hue, costs, matched, targets in shown:
            if not (costs[axis].fillna(0) > 0).any():
                notes.append(f"{run.label} made no {cost.AXES[axis][0].split(' per')[0]}")
                continue
            curves.append((run, hue, *cost.success_curve(costs, matched, axis, targets)))
        floor = min([x for *_, xs, _ in curves for x in xs if x > 0] or [1.0]) / 2  # a log axis has no zero
        for run, hue, xs, ys in curves:
            ax.step([max(x, floor) for x in xs], [100 * y for y in ys], where="post", color=hue, linewidth=1.8,
                    label=run.label if axis == "compute_seconds" else None)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor))  # 2 and 5 only: 3 x 10^1, 4 x 10^1 collide
        ax.set_ylim(0, 100)
        _finish(ax, cost.AXES[axis][0], "% of targets matched" if axis == "compute_seconds" else "", grid="both")
    totals = "; ".join(_total_text(run, costs, targets) for run, _, costs, _, targets in shown)
    caption = ("Share of ALL targets with a sample matching the truth (CDVAE tolerances, valid samples) that was "
               "available at a given cost per target: for a search, what it had spent when it first found that "
               "structure; otherwise the cumulated cost of the target's samples in order. Each line ends at its "
               f"match@k and at the most any target cost. Lines cost in total: {totals}."
               + (f" Not on an axis: {'; '.join(notes)}." if notes else ""))
    return Plot(f"{prefix}success_vs_cost", "Success against cost", caption, figure), missing


def _minor(value, _position) -> str:
    digits = f"{value:.0e}"
    return f"{value:,.0f}" if value >= 1 and digits[0] in "25" else ""


def at_k_plot(runs, prefix: str) -> Plot | None:
    series = []
    for i, run in enumerate(runs):
        matched = _matched(run)
        if matched is not None:
            series.append((run, colour(i), cost.match_at_k(matched, _targets(run), run.entry.k)))
    if not series or max(len(values) for _, _, values in series) < 2:
        return None
    figure, ax = new_figure(7.0, 3.4)
    for run, hue, values in series:
        ax.plot(range(1, len(values) + 1), [100 * v for v in values], marker="o", color=hue, label=run.label)
    largest = max(len(values) for _, _, values in series)
    ax.set_xticks(range(1, largest + 1))
    ax.set_ylim(0, 100)
    _finish(ax, "k (samples per target considered, in the model's order)", "% of targets matched")
    return Plot(f"{prefix}match_at_k", "Match rate @k",
                "Share of ALL targets with a valid sample matching the truth (CDVAE tolerances) among their first "
                "k samples, k = 1…K. A search orders its samples by energy (sample 0 is its lowest-energy "
                "structure); a generative model in the order it drew them.", figure)


def section(key, runs, renderer) -> list[str]:
    """The success-against-cost block of one (task, dataset) group; empty for generation."""
    task, dataset = key
    if task != "csp":
        return []
    from .sections import slug

    prefix = slug(f"{task}-{dataset}") + "-"
    out = [html.heading(3, f"Success against cost: {dataset}")]
    plot, missing = success_plot(runs, prefix)
    out.append(renderer.plot(plot) if plot else html.paragraph(
        "No run of this group recorded its cost per sample (contract 1.1) and was evaluated.", "muted"))
    if missing:
        out.append(html.note("Without recorded costs (made before contract 1.1), not on the cost axes: "
                             + ", ".join(missing) + "."))
    out.append(renderer.plot(at_k_plot(runs, prefix)))
    rows = []
    for run, _, costs, _, targets in _series(runs)[0]:
        total = cost.totals(costs, targets)
        info = machine(run)
        rows.append([run.label, targets, *(_fmt(total[k]) for k in (
            "total_cpu_seconds", "total_gpu_seconds", "total_energy_evaluations", "total_relax_seconds",
            "total_sampling_seconds", "total_seconds")), info["cpu_model"] or "?",
            info["cpus"] if info["cpus"] is not None else "?", _load_text(info), relaxation_cost(run)])
    if rows:
        out.append(html.table(["run", "targets", "CPU s", "GPU s", "evaluations", "relaxation s (wall)",
                               "sampling s (wall)", "model s (wall)", "CPU", "usable CPUs", "load average",
                               "gencsp relax afterwards"], rows))
        out.append(html.paragraph(
            "Totals over the run as the model reported them (every target, matched or not); a later `gencsp relax` "
            "of the samples is listed apart (its steps are energy/force evaluations). CPU seconds count all "
            "threads and child processes; wall seconds stretch with the machine's load, CPU seconds much less, "
            "which is why the cost axes use them.", "muted"))
    return out


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
