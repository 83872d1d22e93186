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


class Source(Strict):
    """A repository at a pin. A GitHub repository pinned to a full commit id is fetched unchanged by
    the image as GitHub's archive `OWNER/REPO/archive/COMMIT.tar.gz` (or from a mirror of them)."""

    repo: str = Field(description="Repository URL (https://github.com/OWNER/REPO for fetched archives).")
    commit: str | None = Field(default=None, description="A full commit id (the image fetches that archive), "
                                                         "or a release of a package the image installs.")
    arg: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$",
                            description="Build argument naming this commit in the Dockerfile.")

    @property
    def fetched(self) -> bool:
        commit = self.commit or ""
        return self.repo.startswith("https://github.com/") and len(commit) == 40 and \
            all(c in "0123456789abcdef" for c in commit)


class Upstream(Source):
    also: list[Source] = Field(default_factory=list,
                               description="Other repositories the image fetches at a pin (e.g. a git dependency).")

    def sources(self) -> list[Source]:
        return [self, *self.also]

    def archives(self) -> list[Source]:
        """The sources the image fetches as archives."""
        return [s for s in self.sources() if s.fetched]


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


class Variant(Strict):
    """One build of a model's image: `gencsp build NAME --variant V` tags it `<image>:V`."""

    description: str
    device: str = Field(pattern=r"^(cpu|cuda)$", description="The device this build runs on.")
    base: str | None = Field(default=None, description="BASE_IMAGE; a `debian:<suite>-slim` base can be made "
                                                       "locally with `gencsp build-base --suite <suite>`.")
    build_args: dict[str, str] = Field(default_factory=dict)
    seconds_per_sample: float | None = Field(
        default=None, gt=0, description="This build's time per sample where it differs from the card's "
                                        "resources (a CPU build of a GPU model); it sets the shards' time limit.")


class E2ETrain(Strict):
    """Smoke-scale training of `gencsp e2e` (this machine has no train splits: val, minus a held-out tail)."""

    split: str = "val"
    limit: int | None = Field(default=None, ge=2)
    epochs: int | None = Field(default=None, ge=1)
    timeout_minutes: float | None = Field(default=None, gt=0)
    init_only: bool = Field(default=False, description="No training: seeded random weights (a pipeline check).")
    options: dict[str, Any] = Field(default_factory=dict)


class E2EBench(Strict):
    task: Task
    split: str = "test"
    limit: int | None = Field(default=None, ge=1)
    samples_per_target: int = Field(default=1, ge=1)
    num_samples: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    chgnet: bool = Field(default=True, description="Compute the CHGNet-feature distance (fd_chgnet): minutes of "
                                                   "CPU for a whole reference split.")


class E2E(Strict):
    """`make e2e MODEL=name`: build the CPU image, train at smoke scale (or not), bench, report."""

    dataset: str = "perov_5"
    train: E2ETrain | None = None
    bench: list[E2EBench] = Field(min_length=1)


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
    untrained_weights: bool = Field(
        default=False, description="`gencsp train --init-only` writes seeded random weights with the upstream's "
                                   "own model code (its train entry honours option init_only): a pipeline check."
    )
    reads_dataset: bool = Field(
        default=False, description="Mount the split named by option `source_split` read-only at sampling time."
    )
    resources: Resources = Field(default_factory=Resources)
    default_options: dict[str, Any] = Field(default_factory=dict)
    image: str | None = Field(default=None, description="Image name; defaults to gencsp/<name>.")
    variants: dict[str, Variant] = Field(default_factory=dict,
                                         description="Builds of the image (cpu, cuda); none: one image.")
    e2e: E2E | None = Field(default=None, description="The smoke-scale end-to-end recipe of `gencsp e2e`.")

    @model_validator(mode="after")
    def _wyckoff_needs_group(self) -> ModelCard:
        if Oracle.wyckoff in self.requires and Oracle.space_group not in self.requires:
            raise ValueError("a model that requires wyckoff letters also requires the space group")
        return self

    @model_validator(mode="after")
    def _variant_names(self) -> ModelCard:
        bad = [name for name in self.variants if not name.replace("-", "").isalnum() or name != name.lower()]
        if bad:
            raise ValueError(f"variant names are lower-case tags: {bad}")
        return self

    @property
    def image_name(self) -> str:
        return self.image or f"gencsp/{self.name}"

    def variant_for(self, device: str) -> str | None:
        """The variant a device runs by default: the one built for it, else the only one."""
        if not self.variants:
            return None
        matching = [name for name, v in self.variants.items() if v.device == device]
        if matching:
            return matching[0]
        return next(iter(self.variants)) if len(self.variants) == 1 else None

    def with_variant(self, variant: str | None) -> ModelCard:
        """This card naming the image of one variant (`gencsp/<name>:<variant>`)."""
        if variant is None:
            return self
        if variant not in self.variants:
            known = ", ".join(self.variants) or "none"
            raise ValueError(f"model {self.name} has no variant {variant!r} (variants: {known})")
        repository = self.image_name
        if ":" in repository.rsplit("/", 1)[-1]:  # drop a tag, keep a registry port
            repository = repository.rsplit(":", 1)[0]
        update = {"image": f"{repository}:{variant}"}
        seconds = self.variants[variant].seconds_per_sample
        if seconds is not None:
            update["resources"] = self.resources.model_copy(update={"seconds_per_sample": seconds})
        return self.model_copy(update=update)
