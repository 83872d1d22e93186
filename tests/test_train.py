"""gencsp train through the real code path: a toy trainable model folder run by the local runtime."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from conftest import ROOT
from orchestrator import models
from orchestrator.cli import main
from orchestrator.runtimes.local import LocalRuntime
from orchestrator.train import TrainConfig, TrainError, train

TOY_ADAPTER = '''
import csv, json, os, sys
import gencsp_helper as g

def train(request, out_dir):
    path = g.Session.path
    rows = {}
    for split, container_path in request["splits"].items():
        host = path(None, container_path)
        with open(host) as handle:
            rows[split] = sum(1 for _ in csv.DictReader(handle))
    if request["options"].get("fail"):
        sys.stderr.write("diverged at epoch 1\\n")
        return 3
    model = os.path.join(out_dir, "model")
    os.makedirs(model)
    with open(os.path.join(model, "weights.json"), "w") as handle:
        json.dump({"rows": rows, "epochs": request.get("max_epochs"), "options": request["options"]}, handle)
    return 0

if __name__ == "__main__":
    g.main(lambda session: None, model={"name": "toy"}, train_fn=train)
'''

TOY_CARD = """
name: toy
description: a trainable stand-in
family: baseline
tasks: [generate]
licence: MIT
trainable: true
default_options: {lr: 0.001}
"""


@pytest.fixture
def containers(tmp_path):
    root = tmp_path / "containers"
    (root / "common").mkdir(parents=True)
    shutil.copy(ROOT / "containers" / "common" / "gencsp_helper.py", root / "common")
    (root / "toy").mkdir()
    (root / "toy" / "adapter.py").write_text(textwrap.dedent(TOY_ADAPTER))
    (root / "toy" / "model.yaml").write_text(TOY_CARD)
    return root


def test_train_mounts_the_splits_and_records_the_checkpoint(home, tmp_path, containers):
    card = models.get("toy", containers)
    config = TrainConfig(model="toy", dataset="mini", device="cpu", max_epochs=2, options={"extra": 1})
    record = train(config, card, LocalRuntime(containers=containers), tmp_path / "trains")
    assert record["state"] == "done", (tmp_path / "trains" / record["train_id"] / "log.txt").read_text()
    folder = tmp_path / "trains" / record["train_id"]
    weights = json.loads((folder / "out" / "model" / "weights.json").read_text())
    assert set(weights["rows"]) == {"train", "val", "test"} and all(n > 0 for n in weights["rows"].values())
    assert weights["epochs"] == 2
    assert weights["options"] == {"dataset_kind": "mp20", "property": None, "lr": 0.001, "extra": 1}
    request = json.loads((folder / "request.json").read_text())
    assert request["splits"]["train"] == "/data/mini/train.csv" and request["output_dir"] == "/io/out"
    assert len(record["checkpoint"]["sha256"]) == 64 and record["checkpoint"]["path"].endswith("out/model")
    assert set(record["dataset"]) == {"train", "val", "test"}
    again = train(config, card, LocalRuntime(containers=containers), tmp_path / "trains")
    assert again == record  # done: not redone


def test_failed_training_is_recorded_and_reported(home, tmp_path, containers):
    card = models.get("toy", containers)
    config = TrainConfig(model="toy", dataset="mini", device="cpu", options={"fail": True})
    record = train(config, card, LocalRuntime(containers=containers), tmp_path / "trains")
    assert record["state"] == "failed" and record["exit_code"] == 3 and "checkpoint" not in record


def test_models_without_training_are_refused(home, tmp_path):
    with pytest.raises(TrainError, match="not trainable"):
        train(TrainConfig(model="gan", dataset="mini"), models.get("gan"), LocalRuntime(), tmp_path)


def test_cli_says_what_a_missing_train_split_is(home, tmp_path, capsys):
    code = main(["train", "--model", "cdvae", "--dataset", "perov_5", "--runtime", "local",
                 "--train-dir", str(tmp_path / "trains")])
    assert code == 1
    assert "perov_5" in capsys.readouterr().err


def test_training_on_val_cuts_a_heldout_tail_and_is_recorded_as_smoke_scale(home, tmp_path, containers):
    import pandas as pd

    from orchestrator.origin import checkpoint_origin, sentence

    card = models.get("toy", containers)
    config = TrainConfig(model="toy", dataset="perov_5", device="cpu", split="val", limit=50, max_epochs=2)
    record = train(config, card, LocalRuntime(containers=containers), tmp_path / "trains")
    assert record["state"] == "done", (tmp_path / "trains" / record["train_id"] / "log.txt").read_text()
    folder = tmp_path / "trains" / record["train_id"]
    weights = json.loads((folder / "out" / "model" / "weights.json").read_text())
    assert weights["rows"] == {"train": 45, "val": 5, "test": 5}
    source = pd.read_csv(home / "datasets" / "perov_5" / "val.csv", index_col=0)
    cut = {name: pd.read_csv(folder / "data" / "perov_5" / f"{name}.csv", index_col=0) for name in ("train", "val")}
    assert list(cut["train"]["material_id"]) == list(source["material_id"][:45])
    assert list(cut["val"]["material_id"]) == list(source["material_id"][45:50])  # held out, never trained on
    assert list(cut["train"].columns) == list(source.columns)  # upstream readers see the same columns
    assert record["scale"] == "smoke" and record["data"]["split"] == "val" and record["data"]["heldout_rows"] == 5
    origin = checkpoint_origin(card, folder / "out" / "model")
    assert origin["kind"] == "trained here" and origin["train_rows"] == 45
    assert "smoke scale on perov_5 val split (45 structures, at most 2 epochs" in sentence(origin, ("perov_5", "test"))


def test_a_train_split_that_cannot_be_had_points_to_val(home, tmp_path, containers, monkeypatch):
    from orchestrator import datasets

    def offline(name, split, progress=True):
        raise datasets.DatasetError(f"cannot download {name}/{split}.csv: no network")

    monkeypatch.setattr(datasets, "fetch", offline)
    card = models.get("toy", containers)
    with pytest.raises(TrainError, match="(?s)cannot download perov_5/train.csv.*--split val"):
        train(TrainConfig(model="toy", dataset="perov_5", device="cpu"), card, LocalRuntime(containers=containers),
              tmp_path / "trains")
    with pytest.raises(TrainError, match="has no split 'dev'"):
        train(TrainConfig(model="toy", dataset="perov_5", device="cpu", split="dev"), card,
              LocalRuntime(containers=containers), tmp_path / "trains")
