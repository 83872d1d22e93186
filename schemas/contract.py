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
CONTRACT_VERSION = "1.0"

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


class RuntimeInfo(Strict):
    device: str
    gpu_name: str | None = None
    hostname: str | None = None
    python: str | None = None
    start: datetime
    end: datetime | None = None


class WyckoffDescription(Strict):
    """A symmetry-only sample: realised into coordinates by the orchestrator."""

    space_group: int = Field(ge=1, le=230)
    sites: list[WyckoffSite] = Field(min_length=1)


class SampleRecord(Strict):
    target_id: str
    sample_index: int = Field(ge=0)
    status: Status
    cif: str | None = Field(default=None, description="CIF path relative to the output folder.")
    wyckoff: WyckoffDescription | None = None
    message: str | None = Field(default=None, max_length=10_000)
    seconds: float = Field(ge=0)

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
