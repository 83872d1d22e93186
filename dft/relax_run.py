"""`gencsp relax RUN`: relax a run's accepted samples with an MLIP, then place them on a hull.

```
runs/<id>/relax/<engine>/
  settings.json       relaxer settings and potential identity (a resume must match them)
  parts/<k>.parquet   records of one chunk, written atomically as soon as it is done
  relaxed.parquet     every relaxed sample (dft/records.py columns)
  reference.json      the hull reference and correction scheme
  stability.parquet   relaxed + hull columns, one row per accepted sample
  summary.json        stability metrics over all requested samples, thresholds named
```

A killed relaxation resumes: finished chunks are kept, only missing samples are redone.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orchestrator.atomic import write_json, write_parquet
from orchestrator.errors import GencspError

from .mlip import Item, MLIPRelaxer
from .records import KEY, frame

RUN_TABLE = "structures.parquet"


class RelaxRunError(GencspError):
    """A relax folder that cannot be resumed, or a run with nothing to relax."""


@dataclass(frozen=True)
class RelaxPlan:
    workers: int = 1
    chunk_size: int = 64  # samples per part file: the resume granularity
    threads: int | None = None  # torch threads per worker (default 1)
    restart: bool = False


def relax_dir(run_path: Path, engine: str) -> Path:
    return Path(run_path) / "relax" / engine


def samples(run_path: Path):
    import pandas as pd

    path = Path(run_path) / RUN_TABLE
    if not path.is_file():
        raise RelaxRunError(f"{path}: no run table; run `gencsp bench` (or collect) first")
    return pd.read_parquet(path)


IDENTITY_KEYS = ("version", "model", "checkpoint_sha256")  # what makes two potentials give other energies


def _check_settings(folder: Path, settings: dict, identity: dict, restart: bool) -> None:
    """Refuse to resume with other settings, or with another checkpoint or package version of the same
    potential (a default checkpoint can change silently with a package upgrade)."""
    path = folder / "settings.json"
    if restart and folder.exists():
        shutil.rmtree(folder)
    if path.is_file():
        recorded = json.loads(path.read_text())
        previous = recorded["relaxer"]
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise RelaxRunError(f"{folder} holds relaxations made with other settings ({', '.join(changed)}); "
                                "use the same settings to resume, or --restart to discard them")
        before = recorded.get("potential") or {}
        changed = [f"{k} {before.get(k)} -> {identity.get(k)}" for k in IDENTITY_KEYS if before.get(k) != identity.get(k)]
        if changed:
            raise RelaxRunError(f"{folder} holds relaxations made with another checkpoint of {identity['name']} "
                                f"({'; '.join(changed)}); install that one again to resume, or --restart")


def done_keys(folder: Path) -> tuple[set, int]:
    import pandas as pd

    keys, last = set(), -1
    for part in sorted((folder / "parts").glob("*.parquet")):
        table = pd.read_parquet(part, columns=list(KEY))
        keys |= set(zip(table.target_id, table.sample_index.astype(int), strict=True))
        last = max(last, int(part.stem))
    return keys, last


# Worker processes: the potential is loaded once per process.
_WORKER: dict = {}


def _init_worker(relaxer: MLIPRelaxer, threads: int | None) -> None:
    _WORKER["relaxer"], _WORKER["potential"] = relaxer, relaxer.load(threads=threads)


def loaded_potential(relaxer: MLIPRelaxer, threads: int | None = None):
    """The potential this process already loaded for `relaxer`, else a new one."""
    if _WORKER.get("relaxer") != relaxer:
        _init_worker(relaxer, threads)
    return _WORKER["potential"]


def _relax_part(path: str, items: list[Item]) -> int:
    records = _WORKER["relaxer"].relax(items, _WORKER["potential"])
    write_parquet(path, frame(records))
    return len(items)


def relax_samples(run_path: Path, relaxer: MLIPRelaxer, plan: RelaxPlan = RelaxPlan(), progress=None):
    """Relax every accepted sample not relaxed yet; returns the merged records."""
    import pandas as pd

    folder = relax_dir(run_path, relaxer.engine)
    identity = relaxer.identity()
    _check_settings(folder, relaxer.settings(), identity, plan.restart)
    table = samples(run_path)
    accepted = table[table["status"] == "accepted"]
    done, last = done_keys(folder)
    todo = [Item(r.target_id, int(r.sample_index), r.cif) for r in accepted.itertuples()
            if (r.target_id, int(r.sample_index)) not in done]
    chunks = [todo[i:i + plan.chunk_size] for i in range(0, len(todo), plan.chunk_size)]
    jobs = [(str(folder / "parts" / f"{last + 1 + k:05d}.parquet"), chunk) for k, chunk in enumerate(chunks)]
    # One torch thread per worker by default: measured faster than two on this 2-core node
    # (benchmarks/relax_speed.py); parallelism comes from --workers processes.
    threads = plan.threads or 1
    started = time.perf_counter()
    if jobs:
        (folder / "parts").mkdir(parents=True, exist_ok=True)
        write_json(folder / "settings.json", {"relaxer": relaxer.settings(), "potential": identity})
        if plan.workers <= 1:
            _init_worker(relaxer, threads)
            for path, chunk in jobs:
                if progress:
                    progress(_relax_part(path, chunk))
                else:
                    _relax_part(path, chunk)
        else:
            _relax_parallel(folder, relaxer, jobs, plan.workers, threads, progress)
    parts = [pd.read_parquet(p) for p in sorted((folder / "parts").glob("*.parquet"))]
    merged = pd.concat(parts, ignore_index=True) if parts else frame([])
    merged = merged.sort_values(list(KEY), kind="stable").reset_index(drop=True)
    write_parquet(folder / "relaxed.parquet", merged)
    return merged, {"wall_seconds": time.perf_counter() - started, "relaxed_now": len(todo)}


def _relax_parallel(folder, relaxer, jobs, workers, threads, progress) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(relaxer, threads)) as pool:
        for count in pool.map(_relax_part, *zip(*jobs, strict=True)):
            if progress:
                progress(count)


def load_stability(run_path: Path, engine: str = "chgnet"):
    """Every requested sample of the run (structures.parquet) with the relaxation and hull columns of
    `gencsp relax --engine ENGINE` (NaN where a sample was not relaxed): the table the stability
    metrics of dft/stability.py take. None when that relaxation has not been run."""
    import pandas as pd

    from .stability import join_samples

    path = relax_dir(run_path, engine) / "stability.parquet"
    if not path.is_file():
        return None
    return join_samples(samples(run_path), pd.read_parquet(path))
