"""Cost and failures of a model, per REQUESTED sample (failed and rejected samples included).

Wall time (first shard start to last shard end) and compute time summed over
shards are different numbers and are named apart: on N parallel shards the sum
is about N times the wall time.
"""

from __future__ import annotations

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
