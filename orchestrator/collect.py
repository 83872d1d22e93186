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
    """The validated rows of a shard; every sample of a shard that never produced a table is rejected."""
    import pandas as pd

    if shard.table_path.exists():
        return typed(pd.read_parquet(shard.table_path))
    state = shard.state()
    if state["status"] == State.failed:
        reason, message = "shard_failed", state.get("error") or "the shard failed"
    else:
        reason, message = "not_run", f"the shard is {state['status']}"
    return _frame(rejected_rows(shard.request().requested(), reason, message, shard.index))


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
