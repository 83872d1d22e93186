"""Generic SLURM job arrays: one shell command per task, for every stage of gencsp.

The shard executor (`executors/slurm.py`) submits `gencsp run-shard RUN K` tasks with
it; relaxations and evaluation submit their own commands the same way:

    from orchestrator import clusters
    from orchestrator.executors.slurm import Resources, Task, submit_array, wait

    profile = clusters.get("jean-zay-cpu", {"account": "abc"})
    tasks = [Task(["gencsp", "relax", "one", str(cif)], log=cif.parent / "relax-%A_%a.log") for cif in cifs]
    submission = submit_array(tasks, folder=run / "relax" / "slurm", profile=profile,
                              resources=Resources(cpus=4, memory_gb=8, seconds=1800), name="relax")
    submission.task_ids          # ["4242_0", "4242_1", ...], one per task, in order
    ended = wait(submission)     # {task_id: FinalState(state="COMPLETED", exit_code=0, ...)}

A task runs `command` (a list is quoted; a string is shell, so `$WORK/...` expands on
the node) after the profile's environment (module purge/load, GENCSP_SIF_DIR, setup
lines) and the caller's `checks` (lines that must pass, e.g. a `sha256sum -c`).
Everything a task prints, the setup included, is appended to its own `log`, where
`%A`, `%a` and `%j` stand for the array job id, the array index and the job id.
Nothing is pickled: the node needs only the shell, SLURM and the command itself.

The job script is made by submitit's sbatch writer (same parameter names, checked);
the script runs under the profile's `shell` and is POSIX sh (Guix nodes have no bash).
Queue state comes from `squeue` and finished tasks from `scontrol` (kept MinJobAge
seconds after the end; there may be no accounting database, so no `sacct`).
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..atomic import write_text
from ..clusters import Profile, ProfileError
from ..errors import GencspError

# squeue states of a task that runs (others in the queue wait: PENDING, REQUEUED, SUSPENDED...).
ACTIVE = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "STOPPED"}
# squeue may still list a task that has just ended: that task has left the queue.
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY",
         "DEADLINE", "REVOKED"}
SAFE_WORD = re.compile(r"[A-Za-z0-9_./:@%+=,-]+")
PLACEHOLDERS = {"%A": "${SLURM_ARRAY_JOB_ID}", "%a": "${SLURM_ARRAY_TASK_ID}", "%j": "${SLURM_JOB_ID}"}


class SlurmError(GencspError):
    """sbatch, squeue or scontrol is missing or refused a request."""


@dataclass(frozen=True)
class Task:
    """One array task: a command (list: quoted; str: a shell line) and its log file."""

    command: Sequence[str] | str
    log: Path | str

    def shell(self) -> str:
        return self.command if isinstance(self.command, str) else shlex.join(str(a) for a in self.command)


@dataclass(frozen=True)
class Resources:
    """What one task needs; the profile turns it into #SBATCH lines."""

    cpus: int = 1
    gpus: int = 0
    memory_gb: float | None = None
    seconds: float | None = None  # expected run time of the slowest task (the profile adds its startup time)


@dataclass
class ArraySubmission:
    array_ids: list[str]
    task_ids: list[str]  # one per task, in task order
    scripts: list[str]
    cluster: str | None = None
    submitted: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QueueEntry:
    state: str  # PENDING, RUNNING, ...
    reason: str = ""  # why it waits (Priority, Resources, JobArrayTaskLimit, BeginTime...)

    @property
    def running(self) -> bool:
        return self.state in ACTIVE


@dataclass(frozen=True)
class FinalState:
    state: str  # COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY, ...
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""


# --- the job script ------------------------------------------------------------------------


def sh_word(template: str | Path) -> str:
    """A shell word for a path whose %A/%a/%j expand on the node."""
    parts = re.split(r"(%[Aaj])", str(template))
    out = []
    for part in parts:
        if part in PLACEHOLDERS:
            out.append(PLACEHOLDERS[part])
        elif part:
            out.append(part if SAFE_WORD.fullmatch(part) and "%" not in part else shlex.quote(part))
    return "".join(out)


def sbatch_parameters(profile: Profile, resources: Resources, name: str) -> dict:
    """submitit `_make_sbatch_string` keywords for one task of this profile."""
    from submitit.slurm.slurm import _convert_mem

    if resources.gpus and profile.gpus_per_task == 0:
        raise ProfileError(f"profile {profile.name}: has no GPUs (gpus_per_task: 0) but the work needs one")
    if not resources.gpus and profile.gpu_only:
        raise ProfileError(f"profile {profile.name} is for GPU work and this work uses no GPU; use a CPU "
                           "profile (e.g. jean-zay-cpu) or ask for a GPU (--device cuda)")
    cpus = max(resources.cpus, resources.gpus * (profile.cpus_per_gpu or 0), 1)
    memory = None
    if resources.memory_gb:
        if profile.request_memory:
            memory = _convert_mem(resources.memory_gb)
        elif profile.memory_per_cpu_gb:
            cpus = max(cpus, math.ceil(resources.memory_gb / profile.memory_per_cpu_gb))
    extra = {"hint": profile.hint, "clusters": profile.cluster, **profile.sbatch}
    return {
        "job_name": name, "time": profile.time_minutes(resources.seconds), "nodes": 1, "ntasks_per_node": 1,
        "cpus_per_task": cpus, "mem": memory, "account": profile.account_flag(), "qos": profile.qos,
        "partition": (profile.gpu_partition if resources.gpus and profile.gpu_partition else profile.partition),
        "constraint": profile.constraint, "gres": f"{profile.gres}:{resources.gpus}" if resources.gpus else None,
        "additional_parameters": {k: v for k, v in extra.items() if v is not None and v is not False},
    }


def environment_lines(profile: Profile) -> list[str]:
    lines = [f"# gencsp: environment of profile {profile.name}"]
    if profile.module_purge:
        lines.append("module purge")
    lines += [f"module load {m}" for m in profile.modules]
    if profile.sif_dir:
        lines.append(f'export GENCSP_SIF_DIR="{profile.sif_dir}"')
    return lines + list(profile.setup)


def task_table(tasks: Sequence[Task]) -> list[str]:
    """A `case` on the array index that sets the task's log and command."""
    lines = ["# gencsp: the task of this array index", 'case "${SLURM_ARRAY_TASK_ID:-}" in']
    for index, task in enumerate(tasks):
        lines.append(f"{index}) task_log={sh_word(task.log)}; task_cmd={shlex.quote(task.shell())} ;;")
    lines += ['*) echo "gencsp: no task ${SLURM_ARRAY_TASK_ID:-} in this array" >&2; exit 2 ;;', "esac",
              'exec >>"$task_log" 2>&1',
              'echo "gencsp: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (job $SLURM_JOB_ID) on '
              '$(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"']
    return lines


def render_script(tasks: Sequence[Task], folder: Path, profile: Profile, resources: Resources, *,
                  name: str = "gencsp", parallel: int | None = None, setup: Sequence[str] = (),
                  checks: Sequence[str] = ()) -> str:
    """The sbatch script of one array: submitit's header, our task table, environment and checks."""
    from submitit.slurm.slurm import _make_sbatch_string

    if not tasks:
        raise ValueError("an array needs at least one task")
    params = sbatch_parameters(profile, resources, name)
    body = task_table(tasks) + environment_lines(profile) + list(setup)
    if checks:
        body += ["# gencsp: checks before the task", *checks]
    text = _make_sbatch_string(
        command='echo "gencsp: $task_cmd"\neval "$task_cmd"', folder=str(folder), map_count=len(tasks),
        array_parallelism=parallel or profile.max_parallel, setup=body, use_srun=False, stderr_to_stdout=True,
        wckey=None, **params)
    # submitit writes a bash shebang (the script is POSIX sh: run it with the profile's shell) and its own
    # requeue protocol for pickled jobs (USR2 before the time limit), which would kill a plain command.
    lines = [line for line in text.replace("#!/bin/bash", f"#!{profile.shell}", 1).splitlines()
             if not line.startswith(("#SBATCH --signal=", "export SUBMITIT_EXECUTOR="))]
    return "\n".join(lines) + "\n"


# --- submit, follow, cancel -----------------------------------------------------------------


def missing() -> str | None:
    """Why SLURM commands cannot be used here, or None."""
    for command in ("sbatch", "squeue", "scontrol"):
        if shutil.which(command) is None:
            return f"`{command}` is not installed here: submit from a SLURM login node"
    return None


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise SlurmError(f"{what}: `{argv[0]}` is not installed here: submit from a SLURM login node") from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(f"{what}: `{' '.join(argv[:2])}` did not answer within 120 s") from exc


def _cluster_flag(cluster: str | None) -> list[str]:
    return ["--clusters", cluster] if cluster else []


def sbatch(script: Path, cluster: str | None = None) -> str:
    """Submit a script; return the job id."""
    result = _run(["sbatch", "--parsable", *_cluster_flag(cluster), str(script)], "sbatch")
    if result.returncode != 0:
        raise SlurmError(f"sbatch refused {script}: {(result.stderr or result.stdout).strip()}")
    job_id = result.stdout.strip().splitlines()[-1].split(";")[0].strip()
    if not job_id.isdigit():
        raise SlurmError(f"sbatch {script}: unexpected answer {result.stdout.strip()!r}")
    return job_id


def chunks(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, max(1, size))]


def submit_array(tasks: Sequence[Task], folder: Path, profile: Profile, resources: Resources, *,
                 name: str = "gencsp", parallel: int | None = None, setup: Sequence[str] = (),
                 checks: Sequence[str] = ()) -> ArraySubmission:
    """Submit one job array per `profile.max_array_size` tasks; return their SLURM ids.

    `folder` (on a filesystem the nodes share) receives the job scripts and SLURM's own
    output (`%A_%a_0_log.out`: messages such as "CANCELLED DUE TO TIME LIMIT"). Every
    check (missing account or time, GPU mismatch, no sbatch) happens before the first
    submission; if a later chunk is refused, the earlier ones are cancelled.
    """
    profile.require()
    sbatch_parameters(profile, resources, name)
    if reason := missing():
        raise SlurmError(reason)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        Path(re.sub(r"%[Aaj]", "x", str(task.log))).parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    submission = ArraySubmission([], [], [], profile.cluster)
    for number, part in enumerate(chunks(len(tasks), profile.max_array_size)):
        script = folder / f"{name}-{stamp}-{number}.sh"
        write_text(script, render_script([tasks[i] for i in part], folder, profile, resources, name=name,
                                         parallel=parallel, setup=setup, checks=checks))
        try:
            array_id = sbatch(script, profile.cluster)
        except SlurmError:
            cancel(submission.array_ids, profile.cluster)
            raise
        submission.array_ids.append(array_id)
        submission.task_ids += [f"{array_id}_{i}" for i in range(len(part))]
        submission.scripts.append(str(script))
    return submission


def _array_ids(task_ids) -> list[str]:
    return sorted({str(t).split("_")[0] for t in task_ids}, key=lambda s: (len(s), s))


def queue_states(task_ids, cluster: str | None = None) -> dict[str, QueueEntry]:
    """Tasks among `task_ids` still in the queue (one squeue call); an absent task has ended."""
    arrays = _array_ids(task_ids)
    if not arrays:
        return {}
    result = _run(["squeue", "--noheader", "--array", *_cluster_flag(cluster), "--jobs", ",".join(arrays),
                   "--format", "%i|%T|%r"], "squeue")
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return {}  # every one of them has left the queue
        raise SlurmError(f"squeue failed: {result.stderr.strip()}")
    wanted = {str(t) for t in task_ids}
    states = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in wanted and parts[1] not in ENDED:
            states[parts[0]] = QueueEntry(parts[1], parts[2])
    return states


def parse_scontrol(text: str) -> dict[str, FinalState]:
    """`scontrol -o show job` lines -> {array_job_task: FinalState}."""
    states = {}
    for line in text.splitlines():
        values = dict(re.findall(r"(\w+)=(\S*)", line))
        if "ArrayJobId" not in values or not values.get("ArrayTaskId", "").isdigit():
            continue
        code, _, sig = values.get("ExitCode", "").partition(":")
        states[f"{values['ArrayJobId']}_{values['ArrayTaskId']}"] = FinalState(
            values.get("JobState", "UNKNOWN"), int(code) if code.isdigit() else None,
            int(sig) if sig.isdigit() else None, values.get("Reason", ""))
    return states


def final_states(task_ids, cluster: str | None = None) -> dict[str, FinalState]:
    """How tasks ended, from scontrol (empty for tasks SLURM has already forgotten)."""
    wanted = {str(t) for t in task_ids}
    states = {}
    for array in _array_ids(task_ids):
        result = _run(["scontrol", *_cluster_flag(cluster), "--oneliner", "show", "job", array], "scontrol")
        if result.returncode == 0:
            states.update({k: v for k, v in parse_scontrol(result.stdout).items() if k in wanted})
    return states


def cancel(ids, cluster: str | None = None) -> None:
    if ids:
        _run(["scancel", *_cluster_flag(cluster), *map(str, ids)], "scancel")


class Pacer:
    """Calls to the scheduler at most once per `seconds` (squeue on a busy cluster is not free)."""

    def __init__(self, seconds: float):
        self.seconds = max(0.5, float(seconds))
        self.last = -math.inf

    def wait(self) -> None:
        delay = self.last + self.seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.last = time.monotonic()


def wait(submission: ArraySubmission, poll_seconds: float = 30.0, on_poll=None,
         max_errors: int = 10) -> dict[str, FinalState]:
    """Block until no task of `submission` is queued; return how each ended.

    `on_poll(queue)` is called after every squeue with {task_id: QueueEntry} of those left.
    squeue errors (a busy controller) are retried `max_errors` times in a row.
    """
    pacer, errors = Pacer(poll_seconds), 0
    while True:
        pacer.wait()
        try:
            queue = queue_states(submission.task_ids, submission.cluster)
            errors = 0
        except SlurmError as exc:
            errors += 1
            if errors > max_errors:
                raise
            print(f"gencsp: {exc} (retrying)", file=sys.stderr)
            continue
        if on_poll:
            on_poll(queue)
        if not queue:
            ended = final_states(submission.task_ids, submission.cluster)
            return {t: ended.get(t, FinalState("UNKNOWN")) for t in submission.task_ids}


def submission_from_json(data: dict) -> ArraySubmission:
    return ArraySubmission(**{k: data[k] for k in ("array_ids", "task_ids", "scripts", "cluster", "submitted")})

