"""The report's figures: pure functions from run data to a matplotlib Figure with a title and caption.

Figures are built with `matplotlib.figure.Figure` (no pyplot state, no display
backend). Every axis names its quantity and unit; every figure has a caption
saying which samples it counts. Runs keep one colour throughout the report; the
reference set is grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .data import CRYSTAL_SYSTEMS, crystal_system, spacegroup_label

REFERENCE_COLOUR = "#8c8c8c"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
TOP_SPACE_GROUPS = 15


@dataclass
class Plot:
    name: str  # file stem
    title: str
    caption: str
    figure: object  # matplotlib Figure


@dataclass
class Series:
    label: str
    values: object  # list/array of numbers (one per category, or samples for a histogram)
    colour: str


def colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def new_figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _finish(ax, xlabel: str, ylabel: str, grid: str = "y") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis=grid, alpha=0.3)
    ax.set_axisbelow(True)


def titled(plot: Plot) -> Plot:
    """The title inside the image too (the PNG/SVG files are read without the page), legend below the axes."""
    figure = plot.figure
    figure.suptitle(plot.title, fontsize=11, fontweight="bold")
    handles, labels = figure.axes[0].get_legend_handles_labels()
    if handles:
        columns = min(len(handles), 3 if max(map(len, labels)) < 32 else 2 if max(map(len, labels)) < 48 else 1)
        figure.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=8, frameon=False)
    return plot


def grouped_bars(categories: list[str], series: list[Series], xlabel: str, ylabel: str, percent: bool = False,
                 horizontal: bool = False, annotate: bool = False):
    """Bars of several series side by side per category; NaN values are left out."""
    import numpy as np

    height = min(8.0, 1.6 + 0.12 * len(categories) * len(series)) if horizontal else 4.0
    figure, ax = new_figure(7.0, height)
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(categories))
    for i, s in enumerate(series):
        values = np.array([np.nan if v is None else float(v) for v in s.values]) * (100 if percent else 1)
        offset = positions - 0.4 + width * (i + 0.5)
        bars = (ax.barh(offset, values, width, label=s.label, color=s.colour) if horizontal
                else ax.bar(offset, values, width, label=s.label, color=s.colour))
        if annotate:
            ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.0f}" if percent else f"{v:.2g}"
                                       for v in values], fontsize=7, padding=1)
    if horizontal:
        ax.set_yticks(positions, categories, fontsize=8)
        ax.invert_yaxis()
        _finish(ax, ylabel, xlabel, grid="x")
    else:
        ax.set_xticks(positions, categories, fontsize=8, rotation=0 if len(categories) < 8 else 45,
                      ha="center" if len(categories) < 8 else "right", rotation_mode="anchor")
        _finish(ax, xlabel, ylabel)
    if percent and annotate:  # rates: the whole 0-100 % scale, room for the labels
        (ax.set_xlim if horizontal else ax.set_ylim)(0, 108)
    return figure


def fractions(values, categories) -> list[float]:
    """Share of `values` in each category (NaN when there are no values)."""
    values = list(values)
    if not values:
        return [math.nan] * len(categories)
    return [sum(v == c for v in values) / len(values) for c in categories]


# --- figures of one group of runs (same task and reference) ----------------------------------------


def validity(runs, prefix: str) -> Plot:
    categories = ["accepted by validation", "composition valid", "structure valid", "valid"]
    series = []
    for i, run in enumerate(runs):
        accepted = float((run.samples["status"] == "accepted").mean()) if len(run.samples) else math.nan
        if run.metrics is None:
            values = [accepted, math.nan, math.nan, math.nan]
        else:
            values = [accepted, *(float(run.metrics[c].fillna(False).astype(bool).mean())
                                  for c in ("comp_valid", "struct_valid", "valid"))]
        series.append(Series(run.label, values, colour(i)))
    figure = grouped_bars(categories, series, "", "% of requested samples", percent=True, annotate=True)
    return Plot(f"{prefix}validity", "Validity",
                "Share of ALL requested samples (failed and rejected ones included). Accepted: the model returned "
                "a readable, ordered structure of the requested composition. Composition valid: SMACT charge "
                "neutrality and electronegativity. Structure valid: no two atoms closer than 0.5 Å and a cell "
                "volume ≥ 0.1 Å³. Valid: both, and the fingerprints could be computed.", figure)


CSP_RATES = (("match@1", "match_rate@1"), ("match@k", "match_rate@{k}"),
             ("strict match@k", "strict.match_rate@{k}"), ("space group match@k", "spacegroup_match_rate@{k}"))
GENERATE_RATES = (("COV-R", "cdvae.cov_recall"), ("COV-P", "cdvae.cov_precision"),
                  ("COV-R paired", "cov_recall_paired"), ("COV-P paired", "cov_precision_paired"),
                  ("unique", "unique_rate"))


def rates(runs, prefix: str) -> Plot | None:
    csp = runs[0].task == "csp"
    names = CSP_RATES if csp else GENERATE_RATES
    series = []
    for i, run in enumerate(runs):
        if not run.entry.evaluated:
            continue  # keeps its colour; the section's note names it
        summary = run.entry.summary
        values = [summary.get(key.format(k=run.entry.k), summary.get(key.format(k=1))) for _, key in names]
        series.append(Series(run.label, values, colour(i)))
    if all(v is None for s in series for v in s.values):
        return None
    categories = [name for name, _ in names]
    figure = grouped_bars(categories, series, "", "% of targets" if csp else "%", percent=True, annotate=True)
    if csp:
        caption = ("Share of ALL targets whose truth structure was found. match@1: the first sample of each "
                   "target; match@k: any of the run's k samples per target (k in the legend when runs differ). "
                   "Matching: pymatgen StructureMatcher with CDVAE's tolerances (stol 0.5, ltol 0.3, angle 10°); "
                   "strict: pymatgen's defaults (stol 0.3, ltol 0.2, angle 5°); space group match: the best "
                   "matched sample also has the truth's space group.")
        return Plot(f"{prefix}match_rate", "Match rate against the truth", caption, figure)
    caption = ("Coverage of the reference set by fingerprint distance (CrystalNN structure and Magpie "
               "composition fingerprints within the dataset's cut-offs). COV-R (recall): reference crystals "
               "with a generated neighbour; COV-P (precision): generated crystals with a reference neighbour, "
               "over all requested samples (CDVAE's definitions). Paired: ONE partner within both cut-offs, "
               "valid crystals only. Unique: distinct structures among valid crystals.")
    return Plot(f"{prefix}coverage", "Coverage and uniqueness", caption, figure)


def density(runs, reference, reference_text: str, prefix: str) -> Plot | None:
    import numpy as np

    data = [("reference", reference["density"].dropna().to_numpy(dtype=float), REFERENCE_COLOUR)]
    data += [(r.label, r.valid()["density"].dropna().to_numpy(dtype=float) if r.metrics is not None
              else np.zeros(0), colour(i)) for i, r in enumerate(runs)]
    pooled = np.concatenate([d[1] for d in data])
    if not len(pooled):
        return None
    low, high = np.percentile(pooled, [0.5, 99.5])
    bins = np.linspace(low, high if high > low else low + 1, 31)
    figure, ax = new_figure()
    for i, (label, values, hue) in enumerate(data):
        if not len(values):
            continue
        weights = np.full(len(values), 1 / len(values))
        ax.hist(np.clip(values, bins[0], bins[-1]), bins, weights=weights, label=f"{label} (n={len(values)})",
                color=hue, histtype="stepfilled" if i == 0 else "step", alpha=0.45 if i == 0 else 1, linewidth=1.8)
    _finish(ax, "density (g/cm³)", "fraction of crystals per bin")
    return Plot(f"{prefix}density", "Density",
                f"Density of the VALID samples of each model against the reference (grey: {reference_text}). "
                "Each histogram sums to 1; values outside the plotted range are counted in the end bins.", figure)


def number_of_elements(runs, reference, reference_text: str, prefix: str) -> Plot | None:
    sets = [("reference", reference["num_elems"].dropna().astype(int).tolist(), REFERENCE_COLOUR)]
    sets += [(r.label, r.valid()["num_elems"].dropna().astype(int).tolist() if r.metrics is not None else [],
              colour(i)) for i, r in enumerate(runs)]
    pooled = sorted({v for _, values, _ in sets for v in values})
    if not pooled:
        return None
    categories = list(range(min(pooled), max(pooled) + 1))
    series = [Series(label, fractions(values, categories), hue) for label, values, hue in sets]
    figure = grouped_bars([str(c) for c in categories], series, "number of distinct elements in the cell",
                          "% of crystals", percent=True)
    return Plot(f"{prefix}num_elements", "Number of elements",
                f"Share of crystals with 1, 2, 3… distinct elements: valid samples of each model and the "
                f"reference ({reference_text}).", figure)


def space_groups(runs, reference, reference_text: str, prefix: str, symprec) -> Plot | None:
    import collections

    sets = [("reference", reference["spacegroup"].dropna().astype(int).tolist(), REFERENCE_COLOUR)]
    sets += [(r.label, r.valid()["spacegroup"].dropna().astype(int).tolist() if r.metrics is not None else [],
              colour(i)) for i, r in enumerate(runs)]
    share: collections.Counter = collections.Counter()
    for _, values, _ in sets:
        for group, n in collections.Counter(values).items():
            share[group] += n / len(values)
    if not share:
        return None
    top = [g for g, _ in share.most_common(TOP_SPACE_GROUPS)]
    series = []
    for label, values, hue in sets:
        shares = fractions(values, top)
        other = 1 - sum(shares) if values else math.nan
        series.append(Series(label, [*shares, other] if len(share) > len(top) else shares, hue))
    categories = [spacegroup_label(g) for g in top] + (["other"] if len(share) > len(top) else [])
    figure = grouped_bars(categories, series, "space group (Hermann–Mauguin symbol, number)", "% of crystals",
                          percent=True)
    rest = "; the remaining groups are summed as 'other'" if len(share) > len(top) else ""
    return Plot(f"{prefix}space_groups", "Space groups",
                f"The {len(top)} most frequent space groups (spglib, symprec {symprec} Å) among valid samples and "
                f"the reference ({reference_text}){rest}.", figure)


def crystal_systems(runs, reference, reference_text: str, prefix: str) -> Plot | None:
    names = [name for name, _ in CRYSTAL_SYSTEMS]
    sets = [("reference", [crystal_system(g) for g in reference["spacegroup"].dropna()], REFERENCE_COLOUR)]
    sets += [(r.label, [crystal_system(g) for g in r.valid()["spacegroup"].dropna()] if r.metrics is not None
              else [], colour(i)) for i, r in enumerate(runs)]
    if not any(values for _, values, _ in sets):
        return None
    series = [Series(label, fractions(values, names), hue) for label, values, hue in sets]
    figure = grouped_bars(names, series, "crystal system", "% of crystals", percent=True)
    return Plot(f"{prefix}crystal_systems", "Crystal systems",
                f"Crystal system of the space group of each valid sample and of the reference ({reference_text}).",
                figure)


def _percent(value) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f} %"


def energy_above_hull(runs, prefix: str) -> Plot | None:
    import numpy as np

    data = []
    for i, run in enumerate(runs):
        for relaxation in run.relaxations:
            values = relaxation.table["e_above_hull"].dropna().to_numpy(dtype=float) \
                if "e_above_hull" in relaxation.table else np.zeros(0)
            if len(values):
                data.append((f"{run.label} ({relaxation.engine})", values, colour(i), relaxation.summary))
    if not data:
        return None
    low = min(-0.1, min(float(v.min()) for _, v, _, _ in data))
    bins = np.linspace(max(low, -0.5), 1.0, 31)
    figure, ax = new_figure()
    for label, values, hue, _ in data:
        weights = np.full(len(values), 1 / len(values))
        ax.hist(np.clip(values, bins[0], bins[-1]), bins, weights=weights, histtype="step", linewidth=1.8,
                color=hue, label=f"{label} (n={len(values)})")
    stable = data[0][3].get("stable_threshold_ev_per_atom", 0.0)
    metastable = data[0][3].get("metastable_threshold_ev_per_atom", 0.1)
    ax.axvline(stable, color="black", linestyle="--", linewidth=1, label=f"stable ≤ {stable} eV/atom")
    ax.axvline(metastable, color="black", linestyle=":", linewidth=1, label=f"metastable ≤ {metastable} eV/atom")
    _finish(ax, "energy above the convex hull (eV/atom)", "fraction of relaxed samples per bin")
    references = sorted({(s.get("reference") or {}).get("description", "none") for _, _, _, s in data})
    rates = "; ".join(f"{label}: stable {_percent(s.get('stable_rate'))}, metastable "
                      f"{_percent(s.get('metastable_rate'))}" for label, _, _, s in data)
    return Plot(f"{prefix}e_above_hull", "Energy above the hull",
                "Energy above the convex hull of the relaxed samples (gencsp relax); values above 1 eV/atom are "
                f"counted in the last bin. Hull reference: {'; '.join(references)}. Share of ALL requested "
                f"samples (unrelaxed ones count as not stable): {rates}.", figure)


# --- figures across every run ---------------------------------------------------------------------


def time_per_sample(runs) -> Plot | None:
    names = (("model-reported, summed over samples", "model_seconds_per_sample"),
             ("wall time of the run", "wall_seconds_per_sample"),
             ("shard times summed over shards", "summed_seconds_per_sample"))
    series = [Series(run.label, [run.entry.summary.get(key) for _, key in names], colour(i))
              for i, run in enumerate(runs) if run.entry.evaluated]
    values = [v for s in series for v in s.values if v]
    if not values:
        return None
    figure = grouped_bars([name for name, _ in names], series, "", "seconds per requested sample",
                          horizontal=True, annotate=True)
    ax = figure.axes[0]
    if max(values) / min(values) > 100:
        ax.set_xscale("log")
        ax.set_xlim(right=max(values) * 3)  # room for the value labels
    else:
        ax.set_xlim(0, max(values) * 1.15)
    return Plot("time_per_sample", "Time per sample",
                "Seconds per REQUESTED sample. Model-reported: the time the model itself recorded per sample, "
                "summed. Wall: first shard start to last shard end, containers included. Summed over shards: "
                "about N × wall when N shards ran in parallel.", figure)
