"""Plan a run: dataset split -> targets -> shards of requests, with provenance."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import ModelCard, Task

from . import datasets, runs
from .errors import GencspError
from .hashing import sha256_file, sha256_tree
from .targets import csp_targets, generate_targets, oracle_for, unsupported_reason

DATA_IN_CONTAINER = "/data"


def truth_frame(frame, truths):
    import pandas as pd

    cif = dict(zip(frame["material_id"].astype(str), frame["cif"], strict=True))
    return pd.DataFrame([{
        "target_id": t.target_id, "material_id": t.material_id, "formula": t.formula,
        "space_group": t.space_group, "wyckoff": json.dumps([s.model_dump() for s in t.wyckoff]),
        "cif": cif[t.material_id],
    } for t in truths])


def mounted_splits(config: runs.RunConfig, card: ModelCard) -> dict[str, str]:
    """Splits the model reads at sampling time: split -> path inside the container."""
    if not card.reads_dataset:
        return {}
    split = {**card.default_options, **config.options}.get("source_split", "train")
    return {split: f"{DATA_IN_CONTAINER}/{config.dataset}/{split}.csv"}


def checkpoint_origin(card: ModelCard, checkpoint: Path | None, sha256: str | None) -> dict:
    from .origin import checkpoint_origin as origin

    return origin(card, checkpoint.resolve() if checkpoint else None, sha256)


def checkpoint_provenance(config: runs.RunConfig) -> dict | None:
    if not config.checkpoint:
        return None
    host = Path(config.checkpoint)
    if not host.exists():
        raise GencspError(f"{host}: checkpoint not found")
    return {"path": str(host.resolve()), "sha256": sha256_tree(host)}


def build(path: Path, config: runs.RunConfig, card: ModelCard) -> runs.Run:
    if config.task not in card.tasks:
        raise GencspError(f"model {card.name} does not do {config.task} (it does {', '.join(card.tasks)})")
    frame = datasets.load(config.dataset, config.split)
    if config.limit:
        frame = frame.head(config.limit)
    dataset = {"name": config.dataset, "split": config.split, "rows": len(frame),
               "kind": datasets.get(config.dataset).kind,
               "sha256": sha256_file(datasets.fetch(config.dataset, config.split, progress=False))}
    oracle = oracle_for(card, config.task)
    truth = None
    if config.task == Task.csp:
        targets, truths = csp_targets(frame, config.samples_per_target, oracle, config.symprec)
        truth = truth_frame(frame, truths)
    else:
        total = config.num_samples or len(frame)
        targets = generate_targets(total, min(config.shard_size, total))
    supported, unsupported = [], []
    for target in targets:
        reason = unsupported_reason(target, card)
        if reason:
            unsupported.append({"target_id": target.id, "samples": target.samples, "reason": reason})
        else:
            supported.append(target)
    data = mounted_splits(config, card)
    for split in data:
        datasets.fetch(config.dataset, split, progress=False)
    checkpoint = checkpoint_provenance(config)
    weights = checkpoint_origin(card, Path(config.checkpoint) if config.checkpoint else None,
                                checkpoint["sha256"] if checkpoint else None)
    provenance = {"dataset": dataset, "oracle": [str(o) for o in oracle], "mounted_splits": sorted(data),
                  "image": None, "checkpoint": checkpoint, "weights": weights}
    return runs.create(path, config, card, supported, provenance, truth, unsupported, data=data)


def plan(config: runs.RunConfig, card: ModelCard, root: Path) -> tuple[runs.Run, bool]:
    """The run for `config` under `root`, created or (same configuration) resumed."""
    return runs.open_or_create(root, config, lambda path: build(path, config, card))
