"""Model registry: one folder per model under containers/, found by glob."""

from __future__ import annotations

from pathlib import Path

from schemas import ModelCard
from schemas.errors import format_errors

from . import paths
from .errors import GencspError


class ModelError(GencspError):
    """A model folder is missing or its card is invalid."""


def model_dirs(root: Path | None = None) -> list[Path]:
    """Folders holding a model.yaml; `common`, `_*` and `.*` are not models."""
    root = root or paths.CONTAINERS_DIR
    return sorted(
        p.parent for p in root.glob("*/model.yaml") if not p.parent.name.startswith(("_", ".")) and p.parent.name != "common"
    )


def load_card(folder: Path) -> ModelCard:
    import yaml
    from pydantic import ValidationError

    path = folder / "model.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: {exc}") from exc
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as exc:
        raise ModelError(f"{path}: invalid model card:\n{format_errors(exc)}") from exc
    if card.name != folder.name:
        raise ModelError(f"{path}: name {card.name!r} differs from its folder name {folder.name!r}")
    return card


def cards(root: Path | None = None) -> dict[str, ModelCard]:
    return {folder.name: load_card(folder) for folder in model_dirs(root)}


def get(name: str, root: Path | None = None) -> ModelCard:
    folder = (root or paths.CONTAINERS_DIR) / name
    if not (folder / "model.yaml").exists():
        known = ", ".join(p.name for p in model_dirs(root)) or "none"
        raise ModelError(f"no model {name!r} (no {folder}/model.yaml); known models: {known}")
    return load_card(folder)


def folder(name: str, root: Path | None = None) -> Path:
    return (root or paths.CONTAINERS_DIR) / name


def for_run(info: dict) -> ModelCard:
    """The card of a run's model, naming the image variant the run uses (run.json `variant`)."""
    card = get(info["config"]["model"])
    variant = info.get("variant")
    return card.with_variant(variant) if variant in card.variants else card


def variant_card(card: ModelCard, variant: str | None) -> ModelCard:
    """The card naming one variant's image; an unknown variant is a ModelError listing the known ones."""
    try:
        return card.with_variant(variant)
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
