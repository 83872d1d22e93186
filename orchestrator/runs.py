"""The run directory: provenance, shards with explicit states, resume.

```
runs/<run-id>/
  run.json                   provenance and configuration
  targets.parquet            truth structures and their symmetry (CSP), never given to models
  unsupported.json           targets the model cannot serve, with the reason
  shards/<k>/request.json    out/  log.txt  state.json  structures.parquet
  structures.parquet         every requested sample: accepted and rejected
```

A run id is derived from its configuration, so running the same command again
finds the same folder and resumes it; shards marked done are never redone.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from pathlib import Path

from schemas import CONTRACT_VERSION, ModelCard, SampleRequest, Target, Task

from . import __version__
from .atomic import write_json, write_text
from .errors import GencspError
from .hashing import sha256_json

RUN_JSON = "run.json"
LIBRARIES = ("pymatgen", "matminer", "smact", "numpy", "scipy", "pandas", "pydantic", "spglib", "pyxtal")


class RunError(GencspError):
    """A run folder is missing, corrupt, or holds another configuration."""


class State(StrEnum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


@dataclass(frozen=True)
class RunConfig:
    """Everything that changes the samples a run asks for. Its hash names the run."""

    model: str
    dataset: str
    split: str
    task: Task
    seed: int = 0
    samples_per_target: int = 1
    num_samples: int | None = None  # generate: total samples (default: rows of the split)
    limit: int | None = None  # first N rows of the split
    shard_size: int = 100  # samples per shard
    device: str = "cpu"
    batch_size: int = 64
    options: dict = field(default_factory=dict)
    symprec: float = 0.1
    checkpoint: str | None = None  # host path of the weights (file or folder), mounted read-only

    def key(self) -> str:
        return sha256_json(asdict(self))[:10]

    def run_id(self) -> str:
        return f"{self.model}-{self.dataset}-{self.split}-{self.task}-s{self.seed}-{self.key()}"


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def host_info() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "python": platform.python_version(), "cpus": os.cpu_count()}


def now() -> str:
    return datetime.now(UTC).isoformat()


class Shard:
    """One container invocation: a request, an output folder, a log and a state."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.index = int(self.path.name)

    request_path = property(lambda self: self.path / "request.json")
    out_dir = property(lambda self: self.path / "out")
    log_path = property(lambda self: self.path / "log.txt")
    state_path = property(lambda self: self.path / "state.json")
    table_path = property(lambda self: self.path / "structures.parquet")

    def request(self) -> SampleRequest:
        return SampleRequest.model_validate_json(self.request_path.read_text())

    def state(self) -> dict:
        if not self.state_path.exists():
            return {"status": State.pending, "attempts": 0}
        return json.loads(self.state_path.read_text())

    @property
    def status(self) -> State:
        return State(self.state()["status"])

    def set_state(self, status: State, **extra) -> None:
        state = self.state()
        state.update(extra, status=str(status), updated=now())
        if status == State.running:
            state["attempts"] = state.get("attempts", 0) + 1
            state["started"] = state["updated"]
        write_json(self.state_path, state)

    def reset_output(self) -> None:
        """Forget a half-finished attempt so the retry starts from a clean folder."""
        shutil.rmtree(self.out_dir, ignore_errors=True)
        self.table_path.unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True)

    def __repr__(self) -> str:
        return f"Shard({self.path})"


class Run:
    def __init__(self, path: Path):
        self.path = Path(path)
        if not (self.path / RUN_JSON).is_file():
            raise RunError(f"{self.path}: not a run directory (no {RUN_JSON})")

    @property
    def info(self) -> dict:
        return json.loads((self.path / RUN_JSON).read_text())

    def update_info(self, **values) -> None:
        info = self.info
        info.update(values)
        write_json(self.path / RUN_JSON, info)

    @property
    def config(self) -> RunConfig:
        data = dict(self.info["config"])
        data["task"] = Task(data["task"])
        return RunConfig(**data)

    def shards(self) -> list[Shard]:
        return sorted((Shard(p) for p in (self.path / "shards").iterdir() if p.name.isdigit()),
                      key=lambda s: s.index)

    def pending(self) -> list[Shard]:
        return [s for s in self.shards() if s.status != State.done]

    def unsupported(self) -> list[dict]:
        path = self.path / "unsupported.json"
        return json.loads(path.read_text()) if path.exists() else []

    def truth(self):
        import pandas as pd

        path = self.path / "targets.parquet"
        return pd.read_parquet(path) if path.exists() else None


def checkpoint_in_container(config: RunConfig) -> str | None:
    return f"/ckpt/{Path(config.checkpoint).name}" if config.checkpoint else None


def pack(targets: list[Target], shard_size: int) -> list[list[Target]]:
    """Group targets in order into shards of at most `shard_size` samples (a bigger target gets its own)."""
    shards: list[list[Target]] = []
    current: list[Target] = []
    size = 0
    for target in targets:
        if current and size + target.samples > shard_size:
            shards.append(current)
            current, size = [], 0
        current.append(target)
        size += target.samples
    if current:
        shards.append(current)
    return shards


def create(path: Path, config: RunConfig, card: ModelCard, targets: list[Target], provenance: dict,
           truth_frame=None, unsupported: list[dict] | None = None, data: dict[str, str] | None = None) -> Run:
    """Write a complete run folder under a temporary name, then rename it into place."""
    path = Path(path)
    if path.exists():
        raise RunError(f"{path}: already exists")
    staging = path.parent / f".{path.name}.creating"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "shards").mkdir(parents=True)
    for k, group in enumerate(pack(targets, config.shard_size)):
        shard_dir = staging / "shards" / f"{k:04d}"
        (shard_dir / "out").mkdir(parents=True)
        request = SampleRequest(task=config.task, seed=config.seed, device=config.device,
                                batch_size=config.batch_size, options={**card.default_options, **config.options},
                                data=data or {}, targets=group, checkpoint=checkpoint_in_container(config))
        write_text(shard_dir / "request.json", request.model_dump_json(indent=2, exclude_none=True) + "\n")
    if truth_frame is not None:
        from .atomic import write_parquet

        write_parquet(staging / "targets.parquet", truth_frame)
    write_json(staging / "unsupported.json", unsupported or [])
    info = {
        "run_id": path.name,
        "created": now(),
        "gencsp_version": __version__,
        "contract_version": CONTRACT_VERSION,
        "config": {**asdict(config), "task": str(config.task)},
        "config_key": config.key(),
        "model_card": card.model_dump(mode="json"),
        "host": host_info(),
        "libraries": library_versions(),
        "samples_requested": sum(t.samples for t in targets) + sum(u["samples"] for u in unsupported or []),
        **provenance,
    }
    write_json(staging / RUN_JSON, info)
    os.replace(staging, path)
    return Run(path)


def open_or_create(root: Path, config: RunConfig, build) -> tuple[Run, bool]:
    """The run for `config` under `root`: resumed if it exists, else made by `build(path)`.

    Under the run's lock: two processes started together make it once, the second resumes it.
    Returns (run, resumed).
    """
    from .console import err
    from .locks import describe, run_lock

    path = Path(root) / config.run_id()
    path.parent.mkdir(parents=True, exist_ok=True)

    def waiting(holder: dict) -> None:
        err.print(f"waiting for {describe(holder)}, which is creating run {path.name}", highlight=False)

    lock = run_lock(path.parent, path.name)
    lock.acquire(on_wait=waiting)
    try:
        if path.exists():
            run = Run(path)
            if run.info.get("config_key") != config.key():
                raise RunError(f"{path}: holds a run with another configuration; use another --run-dir")
            return run, True
        return build(path), False
    finally:
        lock.release()
