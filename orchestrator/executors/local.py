"""Run a run's unfinished shards on this machine, validate each, record its state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from schemas import ModelCard

from ..atomic import write_parquet
from ..locks import LockBusy, describe, shard_lock
from ..prevalidate import Prevalidator
from ..runs import Run, Shard, State
from ..runtimes.base import Runtime, log_tail, run_shard
from ..validate import Limits, ManifestError, validate_shard


@dataclass(frozen=True)
class ShardPolicy:
    retries: int = 2  # extra attempts for a shard whose runtime failed
    timeout: float | None = None  # seconds per shard; None: from the model card
    gpu: bool = False
    limits: Limits = Limits()
    checkpoint: Path | None = None  # host path mounted read-only where the request names a checkpoint

    def timeout_for(self, shard: Shard, card: ModelCard) -> float:
        if self.timeout is not None:
            return self.timeout
        return self.timeout_for_samples(card, len(shard.request().requested()))

    @staticmethod
    def timeout_for_samples(card: ModelCard, samples: int) -> float:
        """Start-up allowance plus three times the card's budget per sample."""
        return 120 + 3 * card.resources.seconds_per_sample * samples


def process_shard(shard: Shard, runtime: Runtime, card: ModelCard, policy: ShardPolicy,
                  redo: bool = False) -> dict:
    """Run one shard from a clean output folder, validate what it wrote, and record the outcome.

    Under the shard's lock: LockBusy when another process runs it now, or finished it since
    the caller looked (nothing is touched). `redo`: run it even if it is done.
    """
    lock = shard_lock(shard.path)
    if not lock.try_acquire():
        raise LockBusy(f"shard {shard.index} is being run by {describe(lock.holder())}")
    try:
        if shard.status == State.done and not redo:
            raise LockBusy(f"shard {shard.index} was finished by another process")
        return _process(shard, runtime, card, policy)
    finally:
        lock.release()


def _process(shard: Shard, runtime: Runtime, card: ModelCard, policy: ShardPolicy) -> dict:
    shard.reset_output()
    shard.set_state(State.running, runtime=runtime.name, **slurm_task())
    with Prevalidator(shard.out_dir, policy.limits) as early:  # parses CIFs while the model runs
        result = run_shard(runtime, shard, card, timeout=policy.timeout_for(shard, card), gpu=policy.gpu,
                           checkpoint=policy.checkpoint)
    outcome = {"exit_code": result.exit_code, "seconds": round(result.seconds, 3),
               "runtime_failure": result.runtime_failure, "timed_out": result.timed_out}
    try:
        report = validate_shard(shard.out_dir, shard.request(), policy.limits, early.parsed)
        if result.timed_out:  # the samples it never wrote were cut by the time limit
            for row in report.rows:
                if row["reason"] == "missing_record":
                    row.update(reason="timeout", message=f"{result.runtime_failure} before the model produced it")
        frame = report.frame()
        frame.insert(0, "shard", shard.index)
        write_parquet(shard.table_path, frame)
    except ManifestError as exc:
        error = f"{result.runtime_failure} ({exc})" if result.runtime_failure else str(exc)
        shard.set_state(State.failed, error=error, log_tail=log_tail(shard.log_path), **outcome)
        return shard.state()
    except Exception as exc:  # noqa: BLE001 - a bug of ours must not leave the shard "running" for ever
        shard.table_path.unlink(missing_ok=True)
        shard.set_state(State.failed, error=f"validation failed: {type(exc).__name__}: {exc}"[:2000],
                        log_tail=log_tail(shard.log_path), **outcome)
        return shard.state()
    # A complete manifest is final even after a crash (a deterministic crash would repeat);
    # a partial one (time limit, kill) is retried, keeping its table if retries run out.
    status = State.done if report.manifest.complete else State.failed
    error = None if status == State.done else (result.runtime_failure or "the manifest is incomplete")
    shard.set_state(status, counts=report.counts(), warnings=report.warnings, error=error,
                    log_tail=log_tail(shard.log_path) if result.exit_code else None, **outcome)
    return shard.state()


def slurm_task() -> dict:
    """The SLURM array task running this shard, if any (recorded in the shard's state)."""
    import os

    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"slurm_task": f"{job}_{task}"} if job and task else {}


def runnable(run: Run, policy: ShardPolicy) -> list[Shard]:
    """Shards not done, with attempts left. Done shards are never redone."""
    return [s for s in run.shards()
            if s.status != State.done and s.state().get("attempts", 0) <= policy.retries]


def run_shards(run: Run, runtime: Runtime, card: ModelCard, policy: ShardPolicy = ShardPolicy(),
               workers: int = 1, progress: bool = True) -> list[dict]:
    """Process runnable shards, `workers` at a time, until none is left; return their final states.

    Shards another process runs now (their lock is held) are left to it: this one runs the
    others, then waits for those to end, and takes any that end unfinished.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    states = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        while todo := runnable(run, policy):
            free = [s for s in todo if shard_lock(s.path).holder() is None]
            if not free:
                _wait_for_others(todo, bar)
                continue
            shards_task = bar.add_task(f"shards ({runtime.name})", total=len(free))
            samples_task = bar.add_task("samples", total=sum(len(s.request().requested()) for s in free))
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                futures = {pool.submit(process_shard, s, runtime, card, policy): s for s in free}
                for future in as_completed(futures):
                    try:
                        state = future.result()
                    except LockBusy:  # taken by another process between the look and the lock
                        continue
                    states.append(state)
                    bar.advance(shards_task)
                    bar.advance(samples_task, sum((state.get("counts") or {}).values()))
    return states


def _wait_for_others(shards: list[Shard], bar) -> None:
    """Until one of `shards`, all run by other processes, is released."""
    import time

    holders = {s.index: shard_lock(s.path) for s in shards}
    task = bar.add_task(f"waiting for {len(holders)} shard(s) run by another process", total=None)
    while all(lock.holder() is not None for lock in holders.values()):
        time.sleep(1.0)
    bar.remove_task(task)


def execute(run: Run, card: ModelCard, runtime_name: str, policy: ShardPolicy, options) -> list[dict]:
    """The local executor's entry point (see orchestrator.executors)."""
    from ..runtimes import get_runtime

    return run_shards(run, get_runtime(runtime_name), card, policy, workers=options.workers,
                      progress=options.progress)
