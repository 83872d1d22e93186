"""Where a run's weights come from, in words that go wherever its numbers appear.

Recorded once, when the run is planned (`run.json` -> `weights`): published weights, weights trained
here (full or smoke scale, read from the training's train.json), untrained weights (a pipeline
check), a checkpoint given by the user, or none (baselines). The leaderboard and the report print
the short form in a column and the sentence as a footnote.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas import ModelCard

TRAIN_JSON = "train.json"


def find_train_record(checkpoint: Path) -> dict | None:
    """The train.json of a `gencsp train` folder holding this checkpoint (trains/<id>/out/model)."""
    for folder in [checkpoint, *checkpoint.parents][:4]:
        path = folder / TRAIN_JSON
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                return None
    return None


def trained_origin(record: dict) -> dict:
    config = record.get("config", {})
    data = record.get("data") or {}
    untrained = bool((config.get("options") or {}).get("init_only"))
    return {
        "kind": "untrained" if untrained else "trained here",
        "scale": "none" if untrained else record.get("scale", "full"),
        "train_id": record.get("train_id"),
        "model": config.get("model"),
        "dataset": config.get("dataset"),
        "split": data.get("split", config.get("split", "train")),
        "train_rows": data.get("train_rows"),
        "heldout_rows": data.get("heldout_rows"),
        "max_epochs": config.get("max_epochs"),
        "seconds": record.get("seconds"),
        "seed": config.get("seed"),
        "checkpoint_sha256": (record.get("checkpoint") or {}).get("sha256"),
    }


def checkpoint_origin(card: ModelCard, checkpoint: Path | None, sha256: str | None = None) -> dict:
    """The origin of the weights a run uses."""
    if checkpoint is not None:
        record = find_train_record(checkpoint)
        if record is not None:
            return trained_origin(record)
        return {"kind": "given", "path": str(checkpoint), "checkpoint_sha256": sha256}
    if card.checkpoint and card.checkpoint.public:
        return {"kind": "published", "url": card.checkpoint.url, "checkpoint_sha256": card.checkpoint.sha256}
    return {"kind": "none"}


def short(origin: dict | None) -> str:
    """The leaderboard column."""
    origin = origin or {"kind": "none"}
    kind = origin.get("kind")
    if kind == "trained here":
        return "trained here, smoke scale" if origin.get("scale") == "smoke" else "trained here"
    return {"published": "published", "untrained": "untrained: pipeline check", "given": "user checkpoint",
            "none": "-"}.get(kind, str(kind))


def sentence(origin: dict | None, evaluated_on: tuple[str, str] | None = None) -> str | None:
    """The footnote: None where there is nothing to warn about (published weights, baselines)."""
    origin = origin or {"kind": "none"}
    kind = origin.get("kind")
    if kind == "untrained":
        return ("Untrained weights: pipeline check. The model's own code ran end to end on randomly "
                "initialised weights; these numbers say nothing about the published model.")
    if kind == "given":
        return f"Weights from a user checkpoint ({origin.get('path')}), not the authors' published model."
    if kind != "trained here":
        return None
    where = f"{origin.get('dataset')} {origin.get('split')} split"
    rows = origin.get("train_rows")
    details = [f"{rows} structures" if rows else None,
               f"at most {origin['max_epochs']} epochs" if origin.get("max_epochs") else None,
               f"{origin['seconds'] / 60:.0f} min" if origin.get("seconds") else None]
    text = f"Weights trained here on {where} ({', '.join(d for d in details if d)})"
    if origin.get("scale") == "smoke":
        text = text.replace("trained here", "trained here at smoke scale", 1)
        text += ", not the authors' recipe: far from what the model can do"
    if evaluated_on and evaluated_on == (origin.get("dataset"), origin.get("split")):
        text += "; WARNING: trained on the split it is evaluated on"
    elif evaluated_on:
        text += f"; evaluated on {evaluated_on[0]} {evaluated_on[1]}"
    return text + "."
