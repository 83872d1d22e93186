"""The DFT queue of a run: submit task folders (SLURM array or here), follow them, collect.

A task is `done` once collect wrote its record.json (ok or failed, with the error);
`finished` when the engine's output is there but not parsed yet; `queued`/`running`
while SLURM lists it; `lost` when it left the queue without output (collect records
it failed with the SLURM state and its log tail); `pending` when never submitted.
Submitting again sends only pending tasks (and failed ones with `retry_failed`);
collecting again parses only what is new. Nothing that finished is recomputed.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import Path

from orchestrator.atomic import write_json
from orchestrator.errors import GencspError

from .records import FAILED, KEY, RelaxRecord, frame
from .tasks import SAMPLE, DftFolder, TaskSpec

ENGINES = {"vasp": "dft.vasp:VaspMaker", "gpaw": "dft.gpaw:GpawMaker"}
RECORD, SLURM_JSON = "record.json", "submissions.json"


class QueueError(GencspError):
    """An engine or setting that does not exist, or a queue that cannot be used."""


def make_maker(engine: str, overrides: dict | None = None):
    """The engine's maker with `overrides` (field=value) applied; unknown names are refused."""
    import importlib

    if engine not in ENGINES:
        raise QueueError(f"unknown DFT engine {engine!r}; choose from {', '.join(ENGINES)}")
    module, name = ENGINES[engine].split(":")
    maker = getattr(importlib.import_module(module), name)()
    names = {f.name for f in fields(maker)}
    unknown = sorted(set(overrides or {}) - names)
    if unknown:
        raise QueueError(f"{engine} has no setting {', '.join(unknown)}; settings: {', '.join(sorted(names))}")
    return replace(maker, **(overrides or {}))


def saved_maker(folder: DftFolder):
    path = folder.path / "settings.json"
    if not path.is_file():
        raise QueueError(f"{folder.path}: no DFT tasks here; run `gencsp dft submit` first")
    data = json.loads(path.read_text())
    return make_maker(data["engine"], data["settings"])


def _submissions(task_dir: Path) -> list[dict]:
    path = task_dir / SLURM_JSON
    return json.loads(path.read_text()) if path.is_file() else []


def states(folder: DftFolder, maker, queue: dict | None = None) -> dict[Path, str]:
    """State of every task; `queue` is {slurm task id: QueueEntry} of what SLURM still lists."""
    found = {}
    for task_dir, _ in folder.tasks():
        submitted = _submissions(task_dir)
        if (task_dir / RECORD).is_file():
            found[task_dir] = "done"
        elif maker.finished(task_dir):
            found[task_dir] = "finished"
        elif submitted and queue is not None and submitted[-1]["task_id"] in queue:
            found[task_dir] = "running" if queue[submitted[-1]["task_id"]].running else "queued"
        elif submitted and submitted[-1]["task_id"] != "local":
            found[task_dir] = "lost" if queue is not None else "submitted"
        else:
            found[task_dir] = "pending"
    return found


def slurm_queue(folder: DftFolder) -> dict:
    """{task id: QueueEntry} of this folder's tasks still in SLURM's queue (one squeue call)."""
    from orchestrator.executors.slurm import queue_states

    ids = [s[-1]["task_id"] for d, _ in folder.tasks() if (s := _submissions(d)) and s[-1]["task_id"] != "local"]
    if not ids:
        return {}
    cluster = json.loads((folder.path / "settings.json").read_text()).get("cluster")
    return queue_states(ids, cluster)


def to_submit(folder: DftFolder, maker, retry_failed: bool, queue: dict | None) -> list[Path]:
    """Pending (and lost) tasks; failed ones too with retry_failed, after clearing their outputs."""
    chosen = []
    for task_dir, state in states(folder, maker, queue).items():
        if state == "done" and retry_failed and json.loads((task_dir / RECORD).read_text())["status"] == FAILED:
            _reset(task_dir, maker)
            state = "pending"
        if state in ("pending", "lost"):
            chosen.append(task_dir)
    return chosen


def _reset(task_dir: Path, maker) -> None:
    """Clear a failed attempt: its record and outputs go, its inputs are written again."""
    from orchestrator.structures import parse_cif

    spec = TaskSpec(**json.loads((task_dir / "task.json").read_text()))
    for path in task_dir.iterdir():
        if path.name not in ("task.json", SLURM_JSON):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    maker.write_inputs(parse_cif(spec.cif), task_dir, relax_cell=spec.relax_cell)


def array_tasks(maker, task_dirs: list[Path]):
    """(SLURM array tasks, resources of one task): the engine's command run in each task folder."""
    from orchestrator.executors.slurm import Resources, Task

    tasks = [Task(maker.command(d), log=Path(d) / "slurm-%A_%a.log") for d in task_dirs]
    return tasks, Resources(cpus=maker.cpus, seconds=maker.seconds)


def submit_slurm(folder: DftFolder, maker, task_dirs: list[Path], profile, parallel: int | None = None):
    """One array task per folder, through the generic SLURM array API."""
    from orchestrator.executors.slurm import submit_array
    from orchestrator.runs import now

    tasks, resources = array_tasks(maker, [d.resolve() for d in task_dirs])
    submission = submit_array(tasks, folder.path / "slurm", profile, resources, name=f"dft-{maker.name}",
                              parallel=parallel, setup=list(maker.setup))
    settings = json.loads((folder.path / "settings.json").read_text())
    write_json(folder.path / "settings.json", {**settings, "cluster": profile.cluster, "profile": profile.name})
    for task_dir, task_id in zip(task_dirs, submission.task_ids, strict=True):
        write_json(task_dir / SLURM_JSON, [*_submissions(task_dir), {"task_id": task_id, "submitted": now()}])
    return submission


def run_local(maker, task_dirs: list[Path], workers: int = 1, progress=None) -> None:
    """Run the tasks here, `workers` at a time (no scheduler)."""
    from orchestrator.runs import now

    def one(task_dir: Path) -> None:
        write_json(task_dir / SLURM_JSON, [*_submissions(task_dir), {"task_id": "local", "submitted": now()}])
        maker.run(task_dir)
        if progress:
            progress(1)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, task_dirs))


def collect_records(folder: DftFolder, maker, queue: dict | None) -> list[tuple[TaskSpec, RelaxRecord]]:
    """Parse every task that finished and record every lost one; return all records there are."""
    from orchestrator.runtimes.base import log_tail

    task_states = states(folder, maker, queue)
    lost = [d for d, s in task_states.items() if s == "lost"]
    ended = _final_states(folder, lost)
    out = []
    for task_dir, spec in folder.tasks():
        state = task_states[task_dir]
        if state == "finished":
            record = maker.parse(task_dir, spec.target_id, spec.sample_index)
            write_json(task_dir / RECORD, record.row())
        elif state == "lost" or (state == "pending" and _submissions(task_dir)):
            end = ended.get(task_dir)
            why = f"SLURM {end.state} (exit {end.exit_code})" if end else "the task ended without output"
            tail = " | ".join(line for line in log_tail(_log(task_dir), 5).splitlines() if line.strip())
            record = RelaxRecord(spec.target_id, spec.sample_index, maker.name, status=FAILED,
                                 error=f"{why}: {tail}"[:600] if tail else why)
            write_json(task_dir / RECORD, record.row())
        if (task_dir / RECORD).is_file():
            out.append((spec, RelaxRecord(**json.loads((task_dir / RECORD).read_text()))))
    return out


def _log(task_dir: Path) -> Path:
    logs = sorted(task_dir.glob("slurm-*.log")) or [task_dir / "run.log"]
    return logs[-1]


def _final_states(folder: DftFolder, lost: list[Path]) -> dict:
    if not lost:
        return {}
    from orchestrator.executors.slurm import final_states

    by_id = {_submissions(d)[-1]["task_id"]: d for d in lost}
    cluster = json.loads((folder.path / "settings.json").read_text()).get("cluster")
    return {by_id[k]: v for k, v in final_states(list(by_id), cluster).items()}


def tables(records: list[tuple[TaskSpec, RelaxRecord]]):
    """(samples, references) record tables."""
    samples = frame([r for s, r in records if s.role == SAMPLE])
    references = frame([r for s, r in records if s.role != SAMPLE])
    return samples.sort_values(list(KEY), kind="stable").reset_index(drop=True), references


def engine_reference(maker, references, expected: int):
    """The hull of the reference tasks (only when every one of them is done)."""
    from .records import OK
    from .references import Reference, entry_from_record

    ok = references[references["status"] == OK]
    if expected == 0:
        return None
    entries = [entry_from_record(row._asdict(), row.target_id) for row in ok.itertuples(index=False)]
    return Reference(f"engine:{maker.name}", f"{maker.name} reference tasks (elemental prototypes and dataset "
                     "structures)", entries, {"source": "engine", "engine": maker.name, "tasks": expected,
                                               "done": len(references), "failed": int(len(references) - len(ok)),
                                               "scheme": "none (same engine as the candidates)"})

