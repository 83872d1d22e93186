"""score_langevin in its CPU image: upstream's own readers on the data gencsp makes for it, and a checkpoint
written by the upstream trainer sampled through the path the published checkpoint takes.

Needs `gencsp build score_langevin --variant cpu --upstream ../shared/upstream` (about 8 minutes here);
skipped where that image is not built.
"""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest

from conftest import MIRROR, module_home
from orchestrator import images

IMAGE = "gencsp/score_langevin:cpu"
PYTHON = "/opt/venv/bin/python"


@pytest.fixture(scope="module")
def client():
    if not images.daemon_available():
        pytest.skip("no Docker daemon answers")
    c = images.client()
    if not images.image_exists(c, IMAGE):
        pytest.skip(f"{IMAGE} is not built: CI does not build it (15.6 min here); `make e2e MODEL=score_langevin` "
                    "builds it (or gencsp build score_langevin --variant cpu --upstream ../shared/upstream)")
    return c


def in_image(client, script: str, mounts: dict | None = None) -> dict:
    """Run a Python script in the image (no network, read-only mounts); return the JSON it prints last."""
    volumes = {str(host): {"bind": container, "mode": "ro"} for container, host in (mounts or {}).items()}
    output = client.containers.run(IMAGE, entrypoint=[PYTHON, "-c", textwrap.dedent(script)], volumes=volumes,
                                   network_mode="none", remove=True, environment={"HOME": "/tmp"},
                                   working_dir="/tmp", mem_limit="4g")
    return json.loads(output.decode().strip().splitlines()[-1])


def test_every_operation_file_reads_back_with_upstream_get_operations(client):
    result = in_image(client, """
        import json, os, upstream_data
        count = upstream_data.check_with_upstream(os.environ["GENCSP_SPACE_GROUPS"], "/opt/diffusion-atoms")
        print(json.dumps({"checked": count, "files": sorted(os.listdir(os.environ["GENCSP_SPACE_GROUPS"]), key=int)}))
    """)
    assert result["checked"] == 215 and result["files"] == [str(n) for n in range(16, 231)]


def one_structure_per_group():
    """A structure in each space group 16-230: two general orbits on a lattice of the group's system."""
    from pymatgen.core import Lattice, Structure

    def lattice(number):
        if number <= 74:
            return Lattice.orthorhombic(4.1, 4.7, 5.3)
        if number <= 142:
            return Lattice.tetragonal(4.1, 5.3)
        return Lattice.hexagonal(4.1, 5.3) if number <= 194 else Lattice.cubic(5.1)

    rows = []
    for number in range(16, 231):
        structure = Structure.from_spacegroup(number, lattice(number), ["Na", "Cl"],
                                              [[0.1234, 0.2345, 0.3456], [0.3012, 0.0412, 0.1789]], tol=1e-3)
        rows.append({"material_id": f"sg{number}", "cif": structure.to(fmt="cif")})
    return rows


def test_training_data_is_read_by_upstream_atoms_data(client, tmp_path):
    """Every group, real perov_5 and carbon_24 rows (groups <= 15 among them) and a broken row, through
    upstream_data, then upstream's AtomsData (its consistency check and conventional cell), its lattice
    checks and, for one group of each lattice letter, its graph construction."""
    groups = one_structure_per_group()
    carbon = pd.read_csv(MIRROR / "carbon_24" / "val.csv", index_col=0).iloc[:40]
    perov = pd.read_csv(MIRROR / "perov_5" / "val.csv", index_col=0).iloc[:10]
    train = pd.DataFrame(groups + [{"material_id": "broken", "cif": "data_x\n_cell_length_a 1\n"}])
    real = pd.concat([carbon[["material_id", "cif"]], perov[["material_id", "cif"]]], ignore_index=True)
    train.to_csv(tmp_path / "train.csv")
    real.to_csv(tmp_path / "test.csv")
    result = in_image(client, """
        import collections, json, logging, os, sys, torch
        import upstream_data
        sys.path.insert(0, "/opt/diffusion-atoms")
        logging.disable(logging.INFO)
        from datasets import AtomsData
        from functions.atomic import get_graphs, get_permutation
        from functions.lattice import get_lattice_system
        sg = os.environ["GENCSP_SPACE_GROUPS"]
        index = {}
        # the made-up structures at symprec 1e-3 (a general orbit can look more symmetric at 0.1)
        summary = {"train": upstream_data.write_split("/in/train.csv", "/tmp/train", index, symprec=1e-3),
                   "test": upstream_data.write_split("/in/test.csv", "/tmp/test", index)}
        json.dump(index, open("/tmp/index.json", "w"))
        out = {"summary": summary}
        for name in ("train", "test"):
            folder = "/tmp/" + name
            data = AtomsData(folder, sg, "/tmp/index.json")
            shapes, letters, graphs = [], collections.Counter(), {}
            for i in range(len(data)):
                item = data[i]
                system = get_lattice_system(item["space_group"])
                get_permutation(system, torch.tensor(item["atoms"].lattice_mat))  # asserts the cell's shape
                letters[item["sg_type"]] += 1
                shapes.append([item["name"], item["space_group"], len(item["atoms"].elements)])
                if item["sg_type"] not in graphs:
                    g, lg = get_graphs(item["atoms"], item["operations"], "cpu", torch.zeros(1), system,
                                       item["sg_type"])
                    graphs[item["sg_type"]] = [item["space_group"], g.number_of_nodes(), g.number_of_edges()]
            out[name] = {"read": len(data), "letters": letters, "atoms": shapes, "graphs": graphs}
        print(json.dumps(out))
    """, mounts={"/in": tmp_path})
    summary = result["summary"]
    assert summary["train"]["written"] == 215 and summary["train"]["rows"] == 216
    assert list(summary["train"]["skipped"].values())[0]["material_ids"] == ["broken"]
    train = result["train"]
    assert train["read"] == 215  # upstream read every file back, none inconsistent with its operations
    # the asymmetric unit upstream reduces to: the two general orbits gencsp put in
    assert {n for _, _, n in train["atoms"]} == {2}
    assert sorted(g for _, g, _ in train["atoms"]) == list(range(16, 231))
    assert set(train["letters"]) == {"P", "C", "I", "F", "R"}
    assert set(train["graphs"]) == {"P", "C", "I", "F", "R"}
    test = result["test"]
    small = sum(v["count"] for k, v in summary["test"]["skipped"].items() if "skips groups 1-15" in k)
    assert small > 0 and test["read"] == summary["test"]["written"] == 50 - small
    assert {g for _, g, _ in test["atoms"]} >= {25, 99, 123, 221}  # perov_5's groups among them


@pytest.fixture(scope="module")
def trained(client, tmp_path_factory):
    """The upstream trainer on 3 perov_5 val rows (1 held out), one epoch, through `gencsp train` (docker runtime)."""
    from orchestrator.cli import main

    with module_home(tmp_path_factory, "score-train") as (root, _):
        argv = ["train", "--model", "score_langevin", "--dataset", "perov_5", "--split", "val", "--limit", "4",
                "--epochs", "1", "--device", "cpu", "--runtime", "docker", "--train-dir", str(root / "trains")]
        assert main(argv) == 0
        folder = next((root / "trains").iterdir())
        yield root, folder


def test_the_upstream_trainer_writes_its_checkpoint_folder(trained):
    _, folder = trained
    record = json.loads((folder / "train.json").read_text())
    assert record["state"] == "done" and record["scale"] == "smoke"
    model = folder / "out" / "model"
    names = {p.name for p in model.iterdir()}
    # upstream's own files: ckpt.pth, ckpt_<step>.pth, its config dump and loss arrays; gencsp's two notes
    assert {"ckpt.pth", "ckpt_0.pth", "config.yml", "loss.npy", "loss_saved.npy", "train_config.yml",
            "gencsp_data.json"} <= names
    data = json.loads((model / "gencsp_data.json").read_text())
    assert data["train"]["written"] == 3 and data["test"]["written"] == 1 and data["step"] == 0
    assert "main.py --config /work/train_config.yml --doc model --ni" in (folder / "log.txt").read_text()


def test_its_checkpoint_is_sampled_through_the_published_checkpoints_path(trained):
    from orchestrator.cli import main
    from orchestrator.runs import Run

    root, folder = trained
    checkpoint = folder / "out" / "model"
    argv = ["bench", "--model", "score_langevin", "--dataset", "perov_5", "--split", "test", "--limit", "1",
            "--task", "csp", "--device", "cpu", "--runtime", "docker", "--checkpoint", str(checkpoint),
            "--option", "T=1", "--run-dir", str(root / "runs")]
    assert main(argv) == 0
    run = Run(next((root / "runs").iterdir()))
    assert run.info["weights"]["kind"] == "trained here"
    shard = run.shards()[0]
    log = shard.log_path.read_text()
    # the published checkpoint's command: exp/logs/pretrained/ckpt.pth, here a link to the trained folder
    assert "main.py --config /work/config.yml --doc pretrained --sample" in log
    manifest = json.loads((shard.out_dir / "manifest.json").read_text())
    assert manifest["model"]["checkpoint_sha256"]
    produced = [s for s in manifest["samples"] if s["status"] == "ok"]
    assert produced, [s.get("message") for s in manifest["samples"]]
