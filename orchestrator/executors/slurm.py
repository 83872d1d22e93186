"""SLURM executor: one job array per run, one task (`gencsp run-shard RUN K`) per unfinished shard.

`gencsp bench ... --executor slurm --profile P` → `execute()`: the profile is checked
(account, time, GPUs) before anything is submitted; the unfinished shards go out as one
array (throttled with `%`); the SLURM ids are recorded in `run.json` ("slurm") and in
`shards/<k>/slurm.json`; then the queue is followed with a progress bar (squeue at most
every `poll_seconds`), or `--detach` returns at once (`gencsp status`, `gencsp resume`).

Each task runs the gencsp of this install (or the profile's `gencsp`), which starts the
container itself (`--runtime apptainer` on clusters); when the run recorded a SIF sha256,
the task checks the image first (`sha256sum -c`, exit 4 on a mismatch). Its output goes
to `shards/<k>/slurm-<array>_<index>.log`.

Faults: a task that leaves the queue with its shard unfinished (time limit, preemption,
node failure, a failed shard) is resubmitted, one new array per poll round, up to
`retries` times; then the shard is recorded failed with the SLURM state and its log tail,
and the run is collected with what succeeded. A task cancelled by the user (scancel) is
not resubmitted: its shard waits for `gencsp resume`.

Generic arrays for other stages: `submit_array`, `Task`, `Resources`, `wait` (slurm_array).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from schemas import ModelCard

from .. import clusters
from ..atomic import write_json
from ..clusters import Profile
from ..console import err
from ..runs import Run, Shard, State
from ..runtimes.base import log_tail
from .slurm_array import (  # noqa: F401 - the public API of SLURM arrays lives here too
    ArraySubmission,
    FinalState,
    Pacer,
    QueueEntry,
    Resources,
    SlurmError,
    Task,
    cancel,
    final_states,
    missing,
    queue_states,
    render_script,
    submit_array,
    wait,
)

SLURM_JSON = "slurm.json"
SIF_MISMATCH_EXIT = 4


def default_gencsp() -> str:
    """The gencsp of the install running now (the nodes share its filesystem)."""
    script = Path(sys.executable).parent / "gencsp"
    return shlex.quote(str(script)) if script.is_file() else f"{shlex.quote(sys.executable)} -m orchestrator"


def sif_check(identity: dict, sif_dir: str | None) -> list[str]:
    """Lines that stop a task (exit 4) unless its SIF has the sha256 the run recorded."""
    sha = identity.get("sif_sha256") or identity.get("sha256")
    sif = identity.get("sif") or identity.get("image")
    if not sha or not sif or not str(sif).endswith(".sif"):
        return []
    folder = sif_dir or str(Path(sif).parent)
    return [f'gencsp_sif="${{GENCSP_SIF_DIR:-{folder}}}"/{shlex.quote(Path(sif).name)}',
            f'echo "{sha}  $gencsp_sif" | sha256sum -c - || {{ echo "gencsp: $gencsp_sif is not the image '
            f'this run recorded (sha256 {sha})"; exit {SIF_MISMATCH_EXIT}; }}']


def shard_task(gencsp: str, run_path: Path, index: int, runtime: str, timeout: float, gpu: bool = False) -> Task:
    """`gencsp run-shard RUN K` as an array task logging to shards/<k>/slurm-<array>_<index>.log."""
    command = (f"{gencsp} run-shard {shlex.quote(str(run_path))} {index} --runtime {shlex.quote(runtime)} "
               f"--timeout {timeout:g}" + (" --gpu" if gpu else ""))
    return Task(command, log=Path(run_path) / "shards" / f"{index:04d}" / "slurm-%A_%a.log")


@dataclass(frozen=True)
class Plan:
    """What every submission of a run shares (recorded in run.json so that resume repeats it)."""

    profile: Profile
    runtime: str
    retries: int = 2
    timeout: float | None = None
    gpu: bool = False
    gencsp: str = ""
    checks: tuple[str, ...] = ()  # shell lines every task must pass first (the SIF sha256)

    def record(self) -> dict:
        data = asdict(self)
        data["profile"], data["checks"] = self.profile.as_dict(), list(self.checks)
        return data

    def timeout_for(self, shard: Shard, card: ModelCard) -> float:
        from .local import ShardPolicy

        return ShardPolicy(timeout=self.timeout).timeout_for(shard, card)

    def task(self, run: Run, shard: Shard, card: ModelCard) -> Task:
        return shard_task(self.profile.gencsp or self.gencsp, run.path, shard.index, self.runtime,
                          self.timeout_for(shard, card), self.gpu)

    def resources(self, shards: list[Shard], card: ModelCard) -> Resources:
        gpus = self.profile.gpus_per_task if self.gpu or card.resources.gpu == "required" else 0
        seconds = max(self.timeout_for(s, card) for s in shards)
        return Resources(cpus=card.resources.cpus, gpus=gpus, memory_gb=card.resources.memory_gb, seconds=seconds)


# --- per-shard SLURM records (written by the submitting side only) ---------------------------------


def tasks_of(shard: Shard) -> list[dict]:
    path = shard.path / SLURM_JSON
    return json.loads(path.read_text())["tasks"] if path.exists() else []


def last_task(shard: Shard) -> dict | None:
    tasks = tasks_of(shard)
    return tasks[-1] if tasks else None


def _write_tasks(shard: Shard, tasks: list[dict]) -> None:
    write_json(shard.path / SLURM_JSON, {"tasks": tasks})


def note_end(shard: Shard, task_id: str, end: FinalState, outcome: str) -> None:
    tasks = tasks_of(shard)
    for entry in tasks:
        if entry["task_id"] == task_id:
            entry["ended"] = {**asdict(end), "outcome": outcome}
    _write_tasks(shard, tasks)


def failure_tail(shard: Shard, task: dict) -> str:
    """The model's log, then the task's own log, then what SLURM wrote (e.g. DUE TO TIME LIMIT)."""
    array, index = task["task_id"].split("_")
    parts = [log_tail(shard.log_path, 15), log_tail(shard.path / f"slurm-{array}_{index}.log", 10),
             log_tail(Path(task["script"]).parent / f"{array}_{index}_0_log.out", 5)]
    return "\n".join(p for p in parts if p)


# --- following a run's tasks ------------------------------------------------------------------


class Supervisor:
    """Submits shards, follows their tasks, resubmits the ones killed, gives up after `retries`."""

    def __init__(self, run: Run, card: ModelCard, plan: Plan):
        self.run, self.card, self.plan = run, card, plan
        self.active: dict[int, dict] = {}  # shard index -> task_id, attempts before, submissions
        self.finished: dict[int, str] = {}  # shard index -> done | failed | cancelled

    def submit(self, shards: list[Shard], submissions: dict[int, int] | None = None) -> ArraySubmission:
        before = {s.index: s.state().get("attempts", 0) for s in shards}
        submission = submit_array([self.plan.task(self.run, s, self.card) for s in shards], self.run.path / "slurm",
                                  self.plan.profile, self.plan.resources(shards, self.card),
                                  name=f"gencsp-{self.card.name}", checks=self.plan.checks)
        for shard, task_id in zip(shards, submission.task_ids, strict=True):
            script = submission.scripts[submission.array_ids.index(task_id.split("_")[0])]
            entry = {"task_id": task_id, "submitted": submission.submitted, "script": script}
            _write_tasks(shard, [*tasks_of(shard), entry])
            self.active[shard.index] = {"task_id": task_id, "attempts": before[shard.index],
                                        "submissions": (submissions or {}).get(shard.index, 0) + 1}
        info = self.run.info.get("slurm", {})
        arrays = [*info.get("arrays", []), {**submission.to_json(), "shards": [s.index for s in shards]}]
        self.run.update_info(slurm={**self.plan.record(), "arrays": arrays})
        return submission

    def adopt(self, shard: Shard, task_id: str) -> None:
        """Follow a task submitted earlier (by a detached bench or an interrupted wait)."""
        state = shard.state()
        started = 1 if state["status"] == State.running else 0  # a running task has counted its attempt
        self.active[shard.index] = {"task_id": task_id, "attempts": state.get("attempts", 0) - started,
                                    "submissions": 1}

    def poll(self) -> dict[str, QueueEntry]:
        cluster = self.plan.profile.cluster
        queue = queue_states([a["task_id"] for a in self.active.values()], cluster)
        gone = {k: a for k, a in self.active.items() if a["task_id"] not in queue}
        ended = final_states([a["task_id"] for a in gone.values()], cluster) if gone else {}
        again: list[Shard] = []
        counts: dict[int, int] = {}
        for index, active in gone.items():
            del self.active[index]
            shard = self.run_shard(index)
            end = ended.get(active["task_id"], FinalState("UNKNOWN"))
            outcome = self.settle(shard, active, end)
            if outcome == "retry":
                again.append(shard)
                counts[index] = active["submissions"]
            else:
                self.finished[index] = outcome
        if again:
            self.submit(again, counts)
        return queue

    def run_shard(self, index: int) -> Shard:
        return Shard(self.run.path / "shards" / f"{index:04d}")

    def settle(self, shard: Shard, active: dict, end: FinalState) -> str:
        """What to do with a shard whose task left the queue: done, failed, cancelled or retry."""
        state = shard.state()
        ran = state.get("attempts", 0) > active["attempts"]
        task = last_task(shard) or {"task_id": active["task_id"], "script": str(self.run.path / "slurm" / "x")}
        if state["status"] == State.done:
            note_end(shard, active["task_id"], end, "done")
            return "done"
        if end.state == "CANCELLED":
            note_end(shard, active["task_id"], end, "cancelled")
            if state["status"] == State.running:  # killed mid-run: the state on disk is stale
                shard.set_state(State.pending, interrupted=f"task {active['task_id']} cancelled")
            return "cancelled"
        if active["submissions"] <= self.plan.retries:
            note_end(shard, active["task_id"], end, "resubmitted")
            return "retry"
        note_end(shard, active["task_id"], end, "failed")
        why = {}
        if not (ran and state["status"] == State.failed):  # run-shard did not record why: say it here
            code = f", exit {end.exit_code}" if end.exit_code else ""
            when = "while the shard ran" if ran else "before the shard started"
            why = {"error": f"SLURM task {active['task_id']} ended {end.state}{code} {when} "
                            f"({active['submissions']} submissions)", "log_tail": failure_tail(shard, task)}
        shard.set_state(State.failed, slurm_task=active["task_id"], slurm_state=end.state, **why)
        return "failed"

    def follow(self, progress: bool = True) -> None:
        """Poll until no task is left; resubmissions happen inside `poll`."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        total = len(self.active) + len(self.finished)
        pacer, errors = Pacer(self.plan.profile.poll_seconds), 0
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[detail]}"))
        try:
            with Progress(*columns, disable=not progress, console=err) as bar:
                task = bar.add_task(f"shards (slurm, {self.plan.profile.name})", total=total, detail="")
                while self.active:
                    pacer.wait()
                    try:
                        queue = self.poll()
                        errors = 0
                    except SlurmError as exc:
                        errors += 1
                        if errors > 10:
                            raise
                        err.print(f"[yellow]{exc} (retrying)[/]", highlight=False)
                        continue
                    running = sum(1 for q in queue.values() if q.running)
                    outcomes = list(self.finished.values())
                    detail = (f"running {running} · queued {len(queue) - running} · done {outcomes.count('done')}"
                              f" · failed {outcomes.count('failed')} · cancelled {outcomes.count('cancelled')}")
                    bar.update(task, completed=len(self.finished), detail=detail)
        except KeyboardInterrupt:
            err.print(f"stopped following; the SLURM tasks keep running. `gencsp status {self.run.path}` shows "
                      f"them, `gencsp resume {self.run.path}` follows them again.", highlight=False)
            raise


def live_tasks(run: Run, cluster: str | None) -> dict[int, str]:
    """Shards whose last task is still queued or running: {shard index: task id}.

    Tasks that ended while nobody followed them (--detach) get their end recorded.
    """
    latest = {s.index: t["task_id"] for s in run.shards() if (t := last_task(s)) and "ended" not in t}
    if not latest:
        return {}
    queue = queue_states(list(latest.values()), cluster)
    gone = {index: task_id for index, task_id in latest.items() if task_id not in queue}
    ended = final_states(list(gone.values()), cluster) if gone else {}
    for index, task_id in gone.items():
        shard = Shard(run.path / "shards" / f"{index:04d}")
        note_end(shard, task_id, ended.get(task_id, FinalState("UNKNOWN")), "ended unfollowed")
    return {index: task_id for index, task_id in latest.items() if task_id in queue}


@contextmanager
def only_follower(run: Run):
    """One gencsp at a time submits and follows a run (two would submit the same shards twice)."""
    import fcntl

    path = run.path / "slurm" / "follow.lock"
    path.parent.mkdir(exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise SlurmError(f"{run.path}: another gencsp is following this run ({handle.read().strip()}); "
                             "stop it or wait for it") from None
        except OSError:  # a filesystem without locks: go on unprotected
            pass
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield


def start(run: Run, card: ModelCard, plan: Plan, detach: bool = False, progress: bool = True,
          include_failed: bool = True) -> list[dict]:
    """Follow the run's live tasks, submit its other unfinished shards, wait unless `detach`."""
    plan.profile.require()
    with only_follower(run):
        return _start(run, card, plan, detach, progress, include_failed)


def _start(run: Run, card: ModelCard, plan: Plan, detach: bool, progress: bool, include_failed: bool) -> list[dict]:
    supervisor = Supervisor(run, card, plan)
    live = live_tasks(run, plan.profile.cluster) if any(last_task(s) for s in run.shards()) else {}
    todo = [s for s in run.shards() if s.status != State.done and s.index not in live
            and (include_failed or s.status != State.failed)]
    for shard in run.shards():
        if shard.index in live:
            supervisor.adopt(shard, live[shard.index])
    if todo:
        supervisor.submit(todo)
        err.print(f"submitted {len(todo)} shard(s) of {run.path.name} to SLURM ({plan.profile.name})"
                  + (f"; following {len(live)} still queued" if live else ""), highlight=False)
    if not detach:
        supervisor.follow(progress)
    return [s.state() for s in run.shards()]


def make_plan(run: Run, profile: Profile, runtime: str, retries: int = 2, timeout: float | None = None,
              gpu: bool = False) -> Plan:
    runtime = runtime if runtime != "auto" else (profile.runtime or "auto")
    identity = run.info.get("runtime") or {}
    checks = sif_check(identity, profile.sif_dir) if profile.verify_sif else []
    if profile.verify_sif and identity.get("runtime") == "apptainer" and not checks:
        err.print(f"[yellow]warning:[/] no SIF sha256 recorded ({identity.get('sif')} was not found here): "
                  "tasks will not check their image; set GENCSP_SIF_DIR before `gencsp bench`", highlight=False)
    return Plan(profile, runtime, retries=retries, timeout=timeout, gpu=gpu, gencsp=default_gencsp(),
                checks=tuple(checks))


def execute(run: Run, card: ModelCard, runtime_name: str, policy, options) -> list[dict]:
    """The SLURM executor's entry point (see orchestrator.executors)."""
    if not options.profile:
        raise clusters.ProfileError("--executor slurm needs --profile NAME (see `gencsp clusters list`)")
    profile = clusters.get(options.profile, options.extra.get("profile_overrides"))
    plan = make_plan(run, profile, runtime_name, policy.retries, policy.timeout, policy.gpu)
    return start(run, card, plan, detach=options.detach, progress=options.progress)
