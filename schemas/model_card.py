"""`containers/<name>/model.yaml`: what a model is, needs and can serve."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from .contract import OutputKind, Strict, Task


class Family(StrEnum):
    vae = "vae"
    diffusion = "diffusion"
    score = "score"
    flow = "flow"
    gan = "gan"
    wyckoff = "wyckoff"
    language = "language"
    baseline = "baseline"


class Oracle(StrEnum):
    """Truth information a model may need beyond the composition."""

    space_group = "space_group"
    wyckoff = "wyckoff"


class GpuNeed(StrEnum):
    none = "none"
    optional = "optional"
    required = "required"


class Paper(Strict):
    title: str
    url: str | None = None
    doi: str | None = None
    year: int | None = Field(default=None, ge=1900, le=2100)


class Upstream(Strict):
    repo: str
    commit: str | None = None


class Checkpoint(Strict):
    public: bool = Field(description="True when the authors publish generative weights.")
    url: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    path: str | None = Field(default=None, description="Path inside the image where the weights are baked.")


class Limits(Strict):
    """Targets outside these limits are recorded as unsupported, never dropped."""

    space_groups: list[int] | None = None
    min_elements: int | None = Field(default=None, ge=1)
    max_elements: int | None = Field(default=None, ge=1)
    max_atoms: int | None = Field(default=None, ge=1)
    elements: list[str] | None = None


class Resources(Strict):
    gpu: GpuNeed = GpuNeed.none
    memory_gb: float = Field(default=4, gt=0)
    cpus: int = Field(default=1, ge=1)
    seconds_per_sample: float = Field(default=10, gt=0, description="Budget used to size time limits.")


class ModelCard(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    family: Family
    tasks: list[Task] = Field(min_length=1)
    output: OutputKind = "structure"
    requires: list[Oracle] = Field(default_factory=list, description="Oracle information the model needs.")
    limits: Limits = Field(default_factory=Limits)
    upstream: Upstream | None = None
    licence: str
    paper: Paper | None = None
    checkpoint: Checkpoint | None = None
    trainable: bool = False
    reads_dataset: bool = Field(
        default=False, description="Mount the split named by option `source_split` read-only at sampling time."
    )
    resources: Resources = Field(default_factory=Resources)
    default_options: dict[str, Any] = Field(default_factory=dict)
    image: str | None = Field(default=None, description="Image name; defaults to gencsp/<name>.")

    @model_validator(mode="after")
    def _wyckoff_needs_group(self) -> ModelCard:
        if Oracle.wyckoff in self.requires and Oracle.space_group not in self.requires:
            raise ValueError("a model that requires wyckoff letters also requires the space group")
        return self

    @property
    def image_name(self) -> str:
        return self.image or f"gencsp/{self.name}"
