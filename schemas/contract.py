"""The sampling contract between the orchestrator and a model image.

The orchestrator writes a `SampleRequest` (or `TrainRequest`) as JSON into the
shard's I/O folder; the image answers with a `Manifest` and one file per
sample. These models are the single source of truth: `schemas/json/` is
exported from them (`python -m schemas.export`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Major bumps break images; minor bumps add optional fields only.
# 1.1: compute accounting (SampleRecord.cost, RuntimeInfo hardware, load and CPU seconds) and
# per-target budgets (SampleRequest.budget).
CONTRACT_VERSION = "1.1"

_SHA256 = r"^[0-9a-f]{64}$"


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a request must not pass silently."""

    model_config = ConfigDict(extra="forbid")


class Task(StrEnum):
    csp = "csp"
    generate = "generate"


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class Status(StrEnum):
    ok = "ok"
    failed = "failed"


class WyckoffSite(Strict):
    element: str = Field(min_length=1, max_length=3, description="Chemical symbol occupying the orbit.")
    letter: str = Field(pattern=r"^[a-zA-Z]$", description="Wyckoff letter in the standard setting.")
    multiplicity: int | None = Field(default=None, ge=1, description="Sites in the conventional cell.")


class Conditioning(Strict):
    """Extra information given to a model. Everything here is oracle
    information taken from the truth structure, recorded as such in the run."""

    space_group: int | None = Field(default=None, ge=1, le=230)
    wyckoff: list[WyckoffSite] | None = None


class Target(Strict):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.+\-]+$")
    formula: str | None = Field(default=None, description="Reduced formula, e.g. 'SrTiO3'.")
    composition: dict[str, int] | None = Field(
        default=None, description="Element -> number of atoms in the cell (CSP: the truth's cell)."
    )
    num_atoms: int | None = Field(default=None, ge=1)
    samples: int = Field(default=1, ge=1, le=100_000, description="Samples wanted for this target.")
    conditioning: Conditioning | None = None

    @model_validator(mode="after")
    def _atoms_add_up(self) -> Target:
        if self.composition is not None:
            if any(n < 1 for n in self.composition.values()):
                raise ValueError("composition counts must be positive integers")
            total = sum(self.composition.values())
            if self.num_atoms is None:
                self.num_atoms = total
            elif self.num_atoms != total:
                raise ValueError(f"num_atoms={self.num_atoms} but composition sums to {total}")
        return self


class Budget(Strict):
    """Compute allowed to each target's search: a search stops before exceeding either limit.

    Seconds are compute seconds: CPU seconds (all threads and child processes) on a CPU device,
    GPU seconds on a GPU. Models that do not search (one pass per sample) may ignore the budget;
    their recorded cost says what they spent.
    """

    evaluations: int | None = Field(default=None, ge=1, description="Energy/force evaluations per target.")
    seconds: float | None = Field(default=None, gt=0, description="Compute seconds per target.")


class SampleRequest(Strict):
    contract_version: str = CONTRACT_VERSION
    task: Task
    seed: int = Field(default=0, ge=0)
    device: Device = Device.cpu
    batch_size: int = Field(default=64, ge=1)
    checkpoint: str | None = Field(default=None, description="Path of the checkpoint inside the container.")
    options: dict[str, Any] = Field(default_factory=dict, description="Model-specific options.")
    data: dict[str, str] = Field(
        default_factory=dict, description="Dataset splits mounted read-only (split -> CSV path inside the container)."
    )
    budget: Budget | None = Field(default=None, description="Per-target compute budget (contract 1.1).")
    targets: list[Target] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SampleRequest:
        ids = [t.id for t in self.targets]
        if len(ids) != len(set(ids)):
            raise ValueError("target ids must be unique")
        if self.task == Task.csp:
            missing = [t.id for t in self.targets if t.composition is None]
            if missing:
                raise ValueError(f"csp targets need a composition: {missing[:5]}")
        return self

    def requested(self) -> list[tuple[str, int]]:
        """Every (target id, sample index) the manifest must answer."""
        return [(t.id, i) for t in self.targets for i in range(t.samples)]


class Upstream(Strict):
    repo: str = Field(description="Repository URL of the upstream code.")
    commit: str | None = Field(default=None, description="Pinned commit (or release) of the upstream code.")


class ModelIdentity(Strict):
    name: str
    version: str | None = None
    upstream: Upstream | None = None
    checkpoint_sha256: str | None = Field(default=None, pattern=_SHA256)


class Hardware(Strict):
    """What the model ran on, as seen from inside its container."""

    cpu_model: str | None = None
    logical_cpus: int | None = Field(default=None, ge=1, description="CPUs of the machine.")
    usable_cpus: float | None = Field(default=None, gt=0, description="CPUs this process may use (affinity, quota).")
    memory_gb: float | None = Field(default=None, ge=0)


class RuntimeInfo(Strict):
    device: str
    gpu_name: str | None = None
    hostname: str | None = None
    python: str | None = None
    start: datetime
    end: datetime | None = None
    # contract 1.1
    hardware: Hardware | None = None
    cpu_seconds: float | None = Field(default=None, ge=0, description="CPU seconds of the whole process.")
    load_start: list[float] | None = Field(default=None, description="Machine load average (1, 5, 15 min) at start.")
    load_end: list[float] | None = Field(default=None, description="Machine load average (1, 5, 15 min) at the end.")


class WyckoffDescription(Strict):
    """A symmetry-only sample: realised into coordinates by the orchestrator."""

    space_group: int = Field(ge=1, le=230)
    sites: list[WyckoffSite] = Field(min_length=1)


class Progress(Strict):
    """Cost a target's search had spent when a structure was first found."""

    seconds: float | None = Field(default=None, ge=0)
    cpu_seconds: float | None = Field(default=None, ge=0)
    gpu_seconds: float | None = Field(default=None, ge=0)
    energy_evaluations: int | None = Field(default=None, ge=0)


class SampleCost(Strict):
    """What one sample cost (contract 1.1). A search's cost is shared equally by the samples it returns."""

    cpu_seconds: float | None = Field(default=None, ge=0, description="User + system CPU, all threads and children.")
    gpu_seconds: float | None = Field(default=None, ge=0, description="Seconds holding a GPU.")
    energy_evaluations: int | None = Field(default=None, ge=0, description="Energy/force calls of a potential.")
    relax_seconds: float | None = Field(default=None, ge=0, description="Wall seconds in local relaxations.")
    sampling_seconds: float | None = Field(default=None, ge=0, description="Wall seconds in the generative sampler.")
    found_after: Progress | None = Field(default=None, description="Search: its cost when this structure was found.")


class SampleRecord(Strict):
    target_id: str
    sample_index: int = Field(ge=0)
    status: Status
    cif: str | None = Field(default=None, description="CIF path relative to the output folder.")
    wyckoff: WyckoffDescription | None = None
    message: str | None = Field(default=None, max_length=10_000)
    seconds: float = Field(ge=0)
    cost: SampleCost | None = None

    @model_validator(mode="after")
    def _status_matches_payload(self) -> SampleRecord:
        if self.status == Status.ok and self.cif is None and self.wyckoff is None:
            raise ValueError("an ok sample needs a cif path or a wyckoff description")
        if self.status == Status.failed and not self.message:
            raise ValueError("a failed sample needs a message")
        return self


class Manifest(Strict):
    contract_version: str
    task: Task
    seed: int
    complete: bool = Field(default=True, description="False while the model is still writing.")
    model: ModelIdentity
    runtime: RuntimeInfo
    samples: list[SampleRecord]


class TrainRequest(Strict):
    """Train a model whose authors published no generative checkpoint."""

    contract_version: str = CONTRACT_VERSION
    dataset: str
    splits: dict[str, str] = Field(description="Split name -> CSV path inside the container (read-only).")
    output_dir: str = Field(default="/io/out", description="Where the checkpoint is written.")
    seed: int = Field(default=0, ge=0)
    device: Device = Device.cuda
    max_epochs: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_train(self) -> TrainRequest:
        if "train" not in self.splits and not self.options.get("init_only"):
            raise ValueError("splits must include 'train'")
        return self


OutputKind = Literal["structure", "wyckoff"]
