"""Run a profile's metrics on predictions and a reference set; write the summary, provenance, table.

Outputs (written atomically):
- the summary JSON: metric key -> number (null where a metric is not defined on
  these inputs; the provenance notes say why). For the reference profiles the
  keys are exactly the reference scripts' keys.
- `<stem>.provenance.json` beside it (`provenance.json` in a run's metrics/):
  profile, seed, subset size, cut-offs, library versions (pymatgen, matminer,
  smact, ...), inputs and their hashes, counts, wall and summed compute time,
  notes, and the description and direction of every reported metric.
- the per-structure parquet table: one row per requested sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import GencspError
from .context import Context, Settings
from .registry import SKIP, profile_metrics, union_of_needs

EXTRA_LIBRARIES = ("chgnet", "torch")


class EvaluationError(GencspError):
    """The inputs cannot be evaluated under the chosen profile."""


@dataclass
class Result:
    metrics: dict
    table: object  # per-structure DataFrame
    provenance: dict


def _number(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None (also inside a list, e.g. a curve)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_number(v) for v in value]
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _compute(ctx: Context, profile: str) -> tuple[dict, dict]:
    """(key -> value, key -> what the metric is) for the profile's metrics."""
    from .csp_metrics import k_samples
    from .distribution import SubsetError

    k = k_samples(ctx) if ctx.inputs.task == "csp" else 1
    metrics, described = {}, {}
    for key, metric in profile_metrics(profile, ctx.inputs.task):
        try:
            value = metric.function(ctx)
        except SubsetError as exc:
            if profile != "gencsp":
                raise EvaluationError(f"{profile} profile: {exc} (the reference script stops here; the gencsp "
                                      "profile reports these metrics on a smaller subset, named)") from exc
            ctx.notes.append(f"{metric.name}: undefined, {exc}")
            value = None
        if value is not SKIP:
            metrics[key.format(k=k)] = _number(value)
            described[key.format(k=k)] = {"metric": metric.name, "description": metric.description,
                                          "direction": metric.direction}
    return metrics, described


def _subset_rows(ctx: Context, mode: str) -> list:
    from .distribution import SubsetError

    if ctx.inputs.task != "generate":
        return []
    try:
        return list(ctx.subset(mode, ctx.profile == "gencsp"))
    except SubsetError:
        return []


def structure_table(ctx: Context, mode: str):
    """One row per requested sample: inputs, facts, validity under the profile's rules, nearest
    reference distances, uniqueness/novelty (`unique`, `novel`) and CSP matches (`matched`)."""
    import pandas as pd

    columns = ["target_id", "sample_index", "input_reason", "input_message", "skey", "formula", "num_atoms",
               "num_elems", "volume", "density", "min_dist", "spacegroup", "smact_valid", "smact_reason",
               "reason", "message", "fp_reason", "fp_message"]
    table = ctx.gen.reindex(columns=columns).copy()
    table = pd.concat([table, ctx.validity(mode)], axis=1)
    table["in_subset"] = table.index.isin(_subset_rows(ctx, mode))
    if ctx.computed("cdvae-coverage") is not None:
        rows = list(ctx.fingerprinted_rows())
        nearest = ctx.nearest(tuple(rows))
        table.loc[rows, "struct_nn_dist"] = nearest.struct_precision
        table.loc[rows, "comp_nn_dist"] = nearest.comp_precision
    if (groups := ctx.computed("unique-novel")) is not None:
        # unique: the first crystal of its group (a duplicate of an earlier one is not); NA: not valid
        table["unique_group"] = pd.Series({r: g for r, (g, _) in groups.items()}, dtype="Int64")
        table["unique"] = pd.Series({r: g == r for r, (g, _) in groups.items()}, dtype="boolean")
        table["novel"] = pd.Series({r: n for r, (_, n) in groups.items()}, dtype="boolean")
    if (pairs := ctx.computed("pairs")) is not None:
        for column in ("rms_loose", "rms_strict", "match_message", "truth_spacegroup"):
            table[column] = pairs[column]
        # matched: valid (the profile's rules) and within the CDVAE tolerances of its truth
        table["matched"] = (table["valid"].fillna(False) & table["rms_loose"].notna()).astype(bool)
    return table


def mode_of(profile: str) -> str:
    """The validity rules a profile reports in its per-structure table."""
    return profile if profile in ("cdvae", "diffcsp") else "gencsp"


def counts(ctx: Context, validity) -> dict:
    """What was evaluated: samples, reference crystals, and for CSP how many targets were predicted.
    `valid` counts only the crystals whose validity a requested metric needed (the rest: unknown)."""
    known = validity["valid"].dropna()
    out = {"requested": ctx.n_requested, "constructed": int(validity["constructed"].sum()),
           "valid": int(known.sum()), "validity_known": len(known),
           "fingerprinted": int(ctx.gen["fingerprinted"].fillna(False).sum()), "reference": len(ctx.ref),
           "reference_fingerprinted": int(ctx.ref["fingerprinted"].fillna(False).sum())}
    if ctx.inputs.task == "csp":
        out.update(targets_predicted=len(ctx.predicted_targets), targets_in_reference=len(ctx.ref))
    return out


def provenance(ctx: Context, profile: str, descriptions: dict, timing, started: float) -> dict:
    from .. import __version__
    from ..runs import host_info, now
    from .coverage import CUTOFFS
    from .records import NUMERIC_LIBRARIES, library_versions

    validity = ctx.validity(mode_of(profile))
    return {
        "profile": profile, "task": ctx.inputs.task, "kind": ctx.inputs.kind, "seed": ctx.settings.seed,
        "subset_size": ctx.settings.subset_size, "coverage_cutoffs": dict(zip(("structure", "composition"),
                                                                              CUTOFFS[ctx.inputs.kind], strict=True)),
        "symprec": ctx.settings.records.symprec, "settings": asdict(ctx.settings),
        "libraries": library_versions((*NUMERIC_LIBRARIES, *EXTRA_LIBRARIES)), "gencsp_version": __version__,
        "created": now(), "host": host_info(), "inputs": ctx.inputs.source,
        "counts": counts(ctx, validity),
        "timing": {"wall_seconds": round(time.perf_counter() - started, 3),
                   "compute_seconds_summed_over_processes": round(timing.compute_seconds, 3),
                   "records_computed": timing.computed, "records_from_cache": timing.cached},
        "notes": ctx.notes, "metrics": descriptions,
    }


def evaluate(inputs, profile: str = "gencsp", settings: Settings = Settings()) -> Result:
    from .cache import Cache, default_path
    from .inputs import check_reference_records
    from .records import Timing, version

    started = time.perf_counter()
    if profile == "cdvae" and inputs.task == "csp" and settings.chgnet:
        settings = replace(settings, chgnet=False)
    timing = Timing()
    cache = Cache(default_path() if settings.cache else None, version(settings.records))
    try:
        ctx = Context(inputs, settings, cache, timing)
        ctx.profile = profile
        ctx.require(union_of_needs([m for _, m in profile_metrics(profile, inputs.task)], ctx))
        check_reference_records([ctx.ref_records[i] for i in ctx.ref_read], inputs.source)
        metrics, descriptions = _compute(ctx, profile)
        table = structure_table(ctx, mode_of(profile))
        return Result(metrics, table, provenance(ctx, profile, descriptions, timing, started))
    finally:
        cache.close()


def write(result: Result, summary: Path, provenance_path: Path, table_path: Path) -> None:
    from ..atomic import write_json, write_parquet

    write_parquet(table_path, result.table)
    write_json(provenance_path, result.provenance)
    write_json(summary, result.metrics)  # last: a summary on disk means the evaluation finished


def evaluate_run(run_path, profile: str = "gencsp", workers: int | None = None, seed: int = 0,
                 progress: bool = True, train: str | None = None, chgnet: bool = True) -> dict:
    """The bench's evaluation stage: metrics of a run, written to runs/<id>/metrics/."""
    from .inputs import from_run

    inputs = from_run(Path(run_path), train)
    result = evaluate(inputs, profile, Settings(seed=seed, workers=workers, progress=progress, chgnet=chgnet))
    folder = Path(run_path) / "metrics"
    write(result, folder / "summary.json", folder / "provenance.json", folder / "structures.parquet")
    return result.metrics
