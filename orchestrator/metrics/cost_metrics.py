"""Cost and failures of a model, per REQUESTED sample (failed and rejected samples included).

Wall time (first shard start to last shard end) and compute time summed over
shards are different numbers and are named apart: on N parallel shards the sum
is about N times the wall time.
"""

from __future__ import annotations

from .csp_metrics import PRED_VALID
from .registry import SKIP, metric

ANY = "any"


def _shard_times(run) -> tuple[float | None, float | None]:
    """(wall seconds, seconds summed over shards) from the shards' state files.

    Wall time is the union of the shards' spans: the hours between a killed run and its
    resume, when no shard ran, are not the model's time.
    """
    from datetime import datetime

    spans = []
    for shard in run.shards():
        state = shard.state()
        if state.get("started") and state.get("updated"):
            spans.append((datetime.fromisoformat(state["started"]), datetime.fromisoformat(state["updated"])))
    if not spans:
        return None, None
    # the same span per shard (start to validated manifest) in both: wall is its union, summed its sum
    summed = sum((end - start).total_seconds() for start, end in spans)
    return union_seconds(spans), summed


def union_seconds(spans) -> float:
    """Seconds covered by at least one (start, end) span."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(spans):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + (current_end - current_start).total_seconds()


@metric("failed_fraction", "requested samples without a usable structure (model failure, rejected by "
        "validation, unsupported target, unreadable CIF) / requested samples", "lower", ANY,
        {"gencsp": "failed_fraction"}, {"pred": ()})
def _failed(ctx):
    if not ctx.n_requested:
        return float("nan")
    return float((ctx.gen["input_reason"].notna() | ctx.gen["reason"].notna()).mean())


@metric("model_seconds_per_sample", "seconds the model reported for its samples, summed, / requested samples",
        "lower", ANY, {"gencsp": "model_seconds_per_sample"}, {})
def _model_seconds(ctx):
    seconds = ctx.gen["seconds"].astype(float)
    if ctx.inputs.run is None or seconds.isna().all():
        return SKIP
    return float(seconds.fillna(0.0).sum() / ctx.n_requested)


def _per_shard_time(ctx, which: int):
    if ctx.inputs.run is None:
        return SKIP
    seconds = ctx.once("shard-times", lambda: _shard_times(ctx.inputs.run))[which]
    return SKIP if seconds is None else seconds / ctx.n_requested


metric("wall_seconds_per_sample", "run wall time (time during which at least one shard ran, containers "
       "included) / requested samples", "lower", ANY, {"gencsp": "wall_seconds_per_sample"}, {})(
    lambda ctx: _per_shard_time(ctx, 0))
metric("summed_seconds_per_sample", "shard times (start to validated manifest, containers included) summed "
       "over shards / requested samples", "lower", ANY, {"gencsp": "summed_seconds_per_sample"}, {})(lambda ctx: _per_shard_time(ctx, 1))


# --- compute accounting (contract 1.1): what the model reported per sample ------------------------


def _costs(ctx):
    """The run's sample costs (orchestrator.cost), or None without a run or without recorded costs."""
    def load():
        import pandas as pd

        from ..cost import recorded, sample_costs

        samples = pd.read_parquet(ctx.inputs.run.path / "structures.parquet")
        return sample_costs(samples) if recorded(samples) else None

    return None if ctx.inputs.run is None else ctx.once("sample-costs", load)


def _per(ctx, name: str, per_target: bool):
    from ..cost import totals

    costs = _costs(ctx)
    if costs is None:
        return SKIP
    count = len(ctx.predicted_targets) if per_target else ctx.n_requested
    value = totals(costs, count)[f"{name}_per_target"]
    return SKIP if value is None else value


_COSTS = (("cpu_seconds", "CPU seconds (user + system, all threads and child processes) the model reported"),
          ("gpu_seconds", "GPU seconds the model reported (seconds holding a GPU)"),
          ("energy_evaluations", "energy/force evaluations of a potential the model reported"))
for _name, _what in _COSTS:
    metric(f"{_name}_per_sample", f"{_what}, summed / requested samples", "lower", ANY,
           {"gencsp": f"{_name}_per_sample"}, {})(lambda ctx, n=_name: _per(ctx, n, False))
for _name, _what in (*_COSTS, ("relax_seconds", "wall seconds in local relaxations the model reported"),
                     ("sampling_seconds", "wall seconds generating candidates the model reported")):
    metric(f"{_name}_per_target", f"{_what}, summed / predicted targets", "lower", "csp",
           {"gencsp": f"{_name}_per_target"}, {})(lambda ctx, n=_name: _per(ctx, n, True))


def _matched(ctx):
    from .csp_metrics import _known, _pairs

    table = _pairs(ctx)
    return table.assign(matched=_known(table["pred_valid_gencsp"], table["rms_loose"]) & table["rms_loose"].notna())[
        ["target_id", "sample_index", "matched"]]


@metric("match_rate_by_k", "[match@1, ..., match@k]: targets with a valid sample matching the truth (CDVAE "
        "tolerances) among their first j samples / predicted targets, j = 1..k (the @k curve)", "higher", "csp",
        {"gencsp": "match_rate_by_k"}, PRED_VALID)
def _by_k(ctx):
    from ..cost import match_at_k
    from .csp_metrics import k_samples

    return match_at_k(_matched(ctx), len(ctx.predicted_targets), k_samples(ctx))


@metric("compute_seconds_per_matched_target", "compute seconds (CPU, or GPU where held) summed over the run / "
        "targets matched (CDVAE tolerances, best of k)", "lower", "csp",
        {"gencsp": "compute_seconds_per_matched_target"}, PRED_VALID)
def _per_match(ctx):
    from ..cost import totals

    costs = _costs(ctx)
    if costs is None:
        return SKIP
    matched = _matched(ctx)
    hits = matched.loc[matched["matched"], "target_id"].nunique()
    total = totals(costs, 1)["total_compute_seconds"]
    return total / hits if hits and total is not None else None
