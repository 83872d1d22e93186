"""Train a model whose authors published no generative checkpoint (cdvae, wyckoff_diffusion).

```
trains/<model>-<dataset>-<hash>/
  request.json   the TrainRequest (splits as container paths /data/<dataset>/<split>.csv)
  data/          the train/val/test files when they are cut from one split (--split val --limit N)
  out/           /io/out, writable: the model writes its checkpoint (out/model/ by convention)
  work/          /work, writable scratch
  log.txt  state.json  train.json (provenance and, at the end, the checkpoint sha256)
```
The splits are mounted read-only; the model runs `train /io/request.json /io/out` in any runtime.
A finished training is never redone: the same command prints the recorded checkpoint.

Where a dataset's train split is not at hand (this development machine has only val and test),
`--split val` trains on another split: its rows (the first `--limit`) are cut into a training
part and a held-out tail that upstream trainers use for validation (and as their test file); the
split the benchmark evaluates on (test) is never touched. train.json records the cut, and a
training that is cut, capped in epochs or time is recorded as smoke scale: every leaderboard row
made with its weights says so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from schemas import ModelCard, TrainRequest

from .atomic import write_json, write_text
from .errors import GencspError
from .hashing import sha256_file, sha256_json, sha256_tree
from .runs import State, host_info, library_versions, now
from .runtimes.base import DATA_IN_CONTAINER, OUT_IN_CONTAINER, REQUEST_IN_CONTAINER, WORK_IN_CONTAINER, Mount

SPLITS = ("train", "val", "test")


class TrainError(GencspError):
    """The model cannot be trained, or its training failed."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes the checkpoint. Its hash names the train folder."""

    model: str
    dataset: str
    seed: int = 0
    device: str = "cuda"
    max_epochs: int | None = None
    options: dict = field(default_factory=dict)
    split: str = "train"  # the split trained on (val where train is not at hand)
    limit: int | None = None  # its first N rows
    variant: str | None = None  # the image variant (cpu, cuda)

    def train_id(self) -> str:
        # Defaults are left out of the hash so that trainings named before these fields keep their folder.
        values = {k: v for k, v in asdict(self).items()
                  if not (k in ("split", "limit", "variant") and v == TrainConfig.__dataclass_fields__[k].default)}
        return f"{self.model}-{self.dataset}-{sha256_json(values)[:10]}"

    def scale(self, timeout: float | None = None) -> str:
        """smoke: a cut split, an epoch cap or a time limit; full: the upstream recipe on the train split."""
        return "smoke" if (self.split != "train" or self.limit or self.max_epochs or timeout) else "full"


def trains_dir() -> Path:
    return Path(os.environ.get("GENCSP_TRAINS", "trains"))


def dataset_options(dataset: str) -> dict:
    """What a trainer needs to know of the dataset beyond its files (kind, property column)."""
    from . import datasets

    spec = datasets.get(dataset)
    return {"dataset_kind": spec.kind, "property": spec.default_property}


def split_files(dataset: str) -> dict[str, Path]:
    """Host paths of the splits, fetched and verified (train, val, test where the dataset has them)."""
    from . import datasets

    spec = datasets.get(dataset)
    return {split: datasets.fetch(dataset, split, progress=False) for split in SPLITS if split in spec.splits}


def holdout_size(rows: int) -> int:
    """Rows kept out of training for the trainer's own validation: 10 %, at least 1, at most 500."""
    return max(1, min(500, rows // 10))


def cut_split(source: Path, folder: Path, limit: int | None) -> tuple[dict[str, Path], dict]:
    """train/val/test files cut from one split: its first `limit` rows minus a held-out tail.

    The tail is both the validation and the test file: upstream trainers want all three, and the
    benchmark's own test split must stay unseen.
    """
    import pandas as pd

    frame = pd.read_csv(source, index_col=0)
    rows = frame if limit is None else frame.iloc[:limit]
    held = holdout_size(len(rows))
    if len(rows) - held < 1:
        raise TrainError(f"{source}: {len(rows)} row(s) are too few to train on and hold out {held}")
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": rows.iloc[:-held], "val": rows.iloc[-held:], "test": rows.iloc[-held:]}
    files = {}
    for name, part in parts.items():
        files[name] = folder / f"{name}.csv"
        write_text(files[name], part.to_csv())
    return files, {"source": str(source), "source_sha256": sha256_file(source), "rows_used": len(rows),
                   "train_rows": len(rows) - held, "heldout_rows": held,
                   "heldout_is": "val and test files (the last rows used)"}


def training_files(config: TrainConfig, folder: Path) -> tuple[dict[str, Path], dict]:
    """The files a trainer gets, and how they were made (recorded in train.json)."""
    from . import datasets

    spec = datasets.get(config.dataset)
    if config.split not in spec.splits:
        raise TrainError(f"dataset {config.dataset} has no split {config.split!r} (splits: {', '.join(spec.splits)})")
    if config.split == "train" and config.limit is None:
        try:
            return split_files(config.dataset), {"split": "train"}
        except datasets.DatasetError as exc:
            raise TrainError(f"{exc}\nwhere a dataset's train split cannot be had, train on another one at smoke "
                             "scale: --split val (its last rows are held out; test stays unseen)") from exc
    source = datasets.fetch(config.dataset, config.split, progress=False)
    files, cut = cut_split(source, folder / "data" / config.dataset, config.limit)
    return files, {"split": config.split, "limit": config.limit, **cut}


def train_request(config: TrainConfig, card: ModelCard, splits: dict[str, Path]) -> TrainRequest:
    options = {**dataset_options(config.dataset), **card.default_options, **config.options}
    return TrainRequest(dataset=config.dataset, splits={s: f"{DATA_IN_CONTAINER}/{config.dataset}/{s}.csv"
                                                        for s in splits},
                        output_dir=OUT_IN_CONTAINER, seed=config.seed, device=config.device,
                        max_epochs=config.max_epochs, options=options)


def mounts(folder: Path, request: TrainRequest, splits: dict[str, Path]) -> list[Mount]:
    (folder / "out").mkdir(exist_ok=True)
    (folder / "work").mkdir(exist_ok=True)
    return [Mount(folder / "request.json", REQUEST_IN_CONTAINER), Mount(folder / "out", OUT_IN_CONTAINER, False),
            Mount(folder / "work", WORK_IN_CONTAINER, False),
            *(Mount(splits[s], path) for s, path in request.splits.items())]


def checkpoint_path(folder: Path) -> Path | None:
    """out/model/ when the model wrote one there, else out/ if it holds anything."""
    out = folder / "out"
    for candidate in (out / "model", out):
        if candidate.is_dir() and any(p.is_file() for p in candidate.rglob("*")):
            return candidate
    return None


def train(config: TrainConfig, card: ModelCard, runtime, root: Path | None = None,
          timeout: float | None = None) -> dict:
    """Run (or find) the training for `config`; return its train.json record."""
    import json

    if not card.trainable:
        raise TrainError(f"model {card.name} is not trainable (trainable: false in its model.yaml)")
    folder = (root or trains_dir()) / config.train_id()
    record_path = folder / "train.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("state") == State.done:
            return record
    folder.mkdir(parents=True, exist_ok=True)
    splits, data = training_files(config, folder)
    if "train" not in splits:
        raise TrainError(f"dataset {config.dataset} has no train split; train on another one: --split val")
    request = train_request(config, card, splits)
    write_text(folder / "request.json", request.model_dump_json(indent=2, exclude_none=True) + "\n")
    record = {"train_id": folder.name, "config": asdict(config), "model_card": card.model_dump(mode="json"),
              "dataset": {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in splits.items()},
              "data": data, "scale": config.scale(timeout), "timeout_seconds": timeout,
              "runtime": runtime.identity(card), "host": host_info(), "libraries": library_versions(),
              "started": now(), "state": str(State.running)}
    write_json(record_path, record)
    result = runtime.execute(card, ["train", REQUEST_IN_CONTAINER, OUT_IN_CONTAINER], mounts(folder, request, splits),
                             folder / "log.txt", timeout=timeout, gpu=config.device == "cuda")
    checkpoint = checkpoint_path(folder)
    record.update(ended=now(), exit_code=result.exit_code, seconds=round(result.seconds, 3),
                  runtime_failure=result.runtime_failure)
    if result.ok and checkpoint is not None:
        record.update(state=str(State.done), checkpoint={"path": str(checkpoint.resolve()),
                                                         "sha256": sha256_tree(checkpoint)})
    else:
        record.update(state=str(State.failed))
    write_json(record_path, record)
    return record
