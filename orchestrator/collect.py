"""Per-shard tables and the run's `structures.parquet`: one row per requested sample."""

from __future__ import annotations

from .atomic import write_parquet
from .runs import Run, Shard, State
from .validate import COLUMNS, REJECTED, typed

RUN_TABLE = "structures.parquet"


def _frame(rows: list[dict]):
    import pandas as pd

    return typed(pd.DataFrame(rows, columns=["shard", *COLUMNS]))


def rejected_rows(pairs, reason: str, message: str, shard: int | None) -> list[dict]:
    rows = []
    for target_id, index in pairs:
        row = dict.fromkeys(("shard", *COLUMNS))
        row.update(shard=shard, target_id=target_id, sample_index=index, status=REJECTED, reason=reason,
                   message=message)
        rows.append(row)
    return rows


def shard_frame(shard: Shard):
    """One row per requested sample of a shard, in the request's order; every sample of a shard
    that never produced a table is rejected (timeout, shard_failed, not_run)."""
    import pandas as pd

    requested = shard.request().requested()
    state = shard.state()
    if state["status"] == State.failed:
        reason = "timeout" if state.get("timed_out") else "shard_failed"
        message = state.get("error") or "the shard failed"
    else:
        reason, message = "not_run", f"the shard is {state['status']}"
    if not shard.table_path.exists():
        return _frame(rejected_rows(requested, reason, message, shard.index))
    table = typed(pd.read_parquet(shard.table_path))
    # exactly the requested samples, whatever the table holds (a table from an older gencsp)
    keys = pd.MultiIndex.from_frame(table[["target_id", "sample_index"]])
    table = table[~keys.duplicated()].set_index(["target_id", "sample_index"], drop=False)
    wanted = pd.MultiIndex.from_tuples(requested, names=["target_id", "sample_index"])
    present = wanted.isin(table.index)
    rows = table.loc[wanted[present]].reset_index(drop=True)
    missing = rejected_rows([k for k, p in zip(requested, present, strict=True) if not p], reason, message, shard.index)
    return pd.concat([rows, _frame(missing)], ignore_index=True) if missing else rows


def unsupported_frame(run: Run):
    rows = []
    for entry in run.unsupported():
        pairs = [(entry["target_id"], i) for i in range(entry["samples"])]
        rows += rejected_rows(pairs, "unsupported", entry["reason"], None)
    return _frame(rows)


def collect(run: Run):
    """Write and return the run table: accepted and rejected samples of every shard, plus unsupported targets."""
    import pandas as pd

    parts = [shard_frame(s) for s in run.shards()] + [unsupported_frame(run)]
    parts = [p for p in parts if len(p)]
    frame = pd.concat(parts, ignore_index=True) if parts else _frame([])
    frame = frame.sort_values(["target_id", "sample_index"], kind="stable").reset_index(drop=True)
    write_parquet(run.path / RUN_TABLE, frame)
    return frame
