"""gan (PGCGM): the upstream generation path, unchanged, run by the adapter on this host.

The upstream code is the mirror's archive (../shared/upstream), extracted per module: create_cif.py,
pymatgen_valid.py, merge_valid.py, model.py and data/ are the real ones. Only the environment differs
from the image (the host's torch and pymatgen); the image itself runs in tests/test_adapter_images.py
and `make e2e MODEL=gan`. The published weights are not on this machine: the weights here are
upstream's Generator, randomly initialised, or state_dicts of the exact published shape.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from test_adapter_common import CONTAINERS, load_adapter, run_image, write_script

from conftest import SHARED
from orchestrator import models
from schemas import Conditioning, SampleRequest, Target

gan = load_adapter("gan")
COMMIT = models.get("gan").upstream.commit
ARCHIVE = SHARED / "upstream" / "MilesZhao" / "PGCGM" / "archive" / f"{COMMIT}.tar.gz"
OPTIONS = {"candidates": 4, "merge_ratio": 0.6, "dist_ratio": 0.75, "further_merge_ratio": 1.5}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The PGCGM tree at the card's pin, from the mirror (the published weights are not in it)."""
    if not ARCHIVE.is_file():
        pytest.skip(f"no upstream archive at {ARCHIVE}")
    root = tmp_path_factory.mktemp("pgcgm") / "PGCGM"
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(root.parent, filter="data")
    (root.parent / f"PGCGM-{COMMIT}").rename(root)
    assert not (root / "models").exists()
    return root


@pytest.fixture
def upstream_code(upstream, monkeypatch):
    """Import the upstream modules (model.py, create_cif.py) and the adapter against that tree."""
    monkeypatch.syspath_prepend(str(upstream))
    monkeypatch.setattr(gan, "UPSTREAM", str(upstream))
    yield upstream
    for name in ("model", "simple_dist", "create_cif"):
        sys.modules.pop(name, None)


def published_shapes(upstream) -> dict[str, tuple]:
    """Key -> shape of the published file's state_dict, from upstream model.py and its data (as create_cif.py)."""
    sys.path.insert(0, str(upstream))
    try:
        from model import Generator

        features = np.load(upstream / "data" / "elements_features.npy")
        return {k: tuple(v.shape) for k, v in Generator(features.shape[1], 128).state_dict().items()}
    finally:
        sys.path.remove(str(upstream))
        sys.modules.pop("model", None)


def save_as_from_a_gpu(obj, path):
    """torch.save with every storage tagged 'cuda:0', as a file saved on a GPU box (the published one was)."""
    from torch import serialization

    original = serialization.location_tag
    serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(obj, path)
    finally:
        serialization.location_tag = original


def csp_request(checkpoint="/ckpt/model", **options):
    return SampleRequest(task="csp", seed=3, checkpoint=checkpoint, targets=[
        Target(id="srtio3", composition={"Sr": 1, "Ti": 1, "O": 3}, samples=2, conditioning=Conditioning(space_group=221)),
        Target(id="batio3", composition={"Ba": 1, "Ti": 1, "O": 3}, samples=1, conditioning=Conditioning(space_group=123))],
        options={**OPTIONS, **options})


def init_weights(upstream, tmp_path, seed=7):
    """`train` with init_only through the adapter, as `gencsp train --model gan --init-only` runs it."""
    request = {"contract_version": "1.0", "dataset": "none", "splits": {}, "seed": seed, "device": "cpu",
               "options": {"init_only": True}}
    folder = tmp_path / f"init-{seed}"
    folder.mkdir()
    proc, _, _ = run_image("gan", folder, request, upstream, verb="train")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / "out"


# --- small pieces -------------------------------------------------------------------------------


def test_the_cards_20_groups_are_the_generators_symbols(upstream):
    with open(upstream / "data" / "paras.pickle", "rb") as handle:
        symbols = pickle.load(handle)[-2]
    assert sorted(gan.group_symbols(symbols)) == sorted(models.get("gan").limits.space_groups)
    assert gan.group_symbols(["Pm-3m", "P4/nmm"]) == {221: "Pm-3m", 129: "P4/nmm"}
    with open(upstream / "data" / "elements_id_NoPo.json") as handle:
        assert sorted(json.load(handle)) == sorted(models.get("gan").limits.elements)


def test_final_names_map_back_to_rows_and_the_wanted_formula_wins(tmp_path):
    for name in ("5-SrTiO3-221-0_1.cif", "5-SrTiO3-221-0_0.cif", "3-SrTiO-221-2_0.cif", "4-SrTi2O-221-3_2.cif",
                 "notes.csv"):
        (tmp_path / name).write_text("x")
    finals = gan.final_cifs(tmp_path)
    assert sorted(finals) == [0, 2, 3]
    assert [rot for rot, _ in finals[0]] == [0, 1]
    owners = [("a", 0), ("a", 0), ("b", 0), ("b", 0)]
    chosen = gan.choose(owners, finals, {("a", 0): "SrTiO3", ("b", 0): "SrTi2O"})
    assert chosen[("a", 0)].endswith("5-SrTiO3-221-0_0.cif")
    assert chosen[("b", 0)].endswith("4-SrTi2O-221-3_2.cif")  # row 3 matches the formula, row 2 does not


def test_narrowed_data_makes_create_cifs_own_draws_land_on_the_target(upstream_code, tmp_path, monkeypatch):
    upstream = upstream_code
    with open(upstream / "data" / "paras.pickle", "rb") as handle:
        aux = pickle.load(handle)
    with open(upstream / "data" / "elements_id_NoPo.json") as handle:
        element_ids = json.load(handle)
    gan.stage_data(str(tmp_path), ("P4/mmm", ("Ba", "O", "Ti")), aux, element_ids)
    assert (tmp_path / "data" / "symmetry-equiv").is_symlink() and not (tmp_path / "data" / "paras.pickle").is_symlink()
    monkeypatch.chdir(tmp_path)  # create_cif.py reads data/ from the current folder
    import create_cif  # upstream's, unchanged (its __main__ block does not run); pickle5 is gan/pickle5.py

    with open("data/paras.pickle", "rb") as handle:
        narrowed = pickle.load(handle)
    np.random.seed(0)
    groups, elements = create_cif.fake_generator(200, len(narrowed[-2]), narrowed[-1], 3)
    assert set(groups) == {aux[-2]["P4/mmm"]}
    assert {frozenset(int(e) for e in row) for row in elements} == {frozenset(element_ids[e] for e in ("Ba", "O", "Ti"))}
    for before, after in zip(aux[:-1], narrowed[:-1], strict=True):  # only the frequencies change
        assert after == before if isinstance(before, dict) else np.array_equal(after, before)


def test_leftover_cifs_are_archived(tmp_path):
    matdir = tmp_path / "ternary_gen_cifs"
    matdir.mkdir()
    (matdir / "1.tar.gz").write_bytes(b"")
    for name in ("Pm-3m---1000_0.cif", "Pm-3m---1000_1.cif"):
        (matdir / name).write_text("data_x\n")
    archive = gan.pack_leftovers(str(matdir))
    assert archive.endswith("2.tar.gz") and not list(matdir.glob("*.cif"))
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["ternary_gen_cifs/Pm-3m---1000_0.cif", "ternary_gen_cifs/Pm-3m---1000_1.cif"]
    assert gan.pack_leftovers(str(matdir)) is None


# --- weights ------------------------------------------------------------------------------------


def test_a_state_dict_of_the_published_shape_loads_even_saved_on_a_gpu(upstream_code, tmp_path):
    shapes = published_shapes(upstream_code)
    assert len(shapes) == 116 and shapes["coords_block1.0.weight"] == (512, 1024, 2, 2)
    assert shapes["ele_block.0.weight"] == (64, 23, 2) and shapes["noise_block.0.weight"] == (256, 128)
    generator = torch.Generator().manual_seed(1)
    state = {k: torch.rand(shape, generator=generator) if shape else torch.tensor(5) for k, shape in shapes.items()}
    published = tmp_path / "generator_weights.pth"
    save_as_from_a_gpu({"state_dict": state}, published)
    with pytest.raises(RuntimeError, match="CUDA"):  # what create_cif.py's torch.load does with it on a CPU host
        torch.load(published, weights_only=False)
    loaded = gan.load_state_dict(str(published))
    assert {k: tuple(v.shape) for k, v in loaded.items()} == shapes
    assert all(v.device.type == "cpu" for v in loaded.values())
    staged = tmp_path / "staged.pth"
    gan.save_weights(loaded, str(staged))
    again = torch.load(staged)  # no map_location, as create_cif.py: CPU tensors now
    assert torch.equal(again["state_dict"]["coords_block1.0.weight"], state["coords_block1.0.weight"])
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)  # a bare state_dict is taken too
    assert set(gan.load_state_dict(str(bare))) == set(shapes)


def test_other_files_are_refused_naming_the_file_and_the_problem(upstream_code, tmp_path):
    shapes = published_shapes(upstream_code)
    wrong = {k: torch.zeros(shape) for k, shape in shapes.items()}
    wrong["ele_block.0.weight"] = torch.zeros(64, 24, 2)  # element features of another width
    path = tmp_path / "wrong.pth"
    torch.save({"state_dict": wrong}, path)
    with pytest.raises(gan.g.ContractError, match=r"wrong\.pth: not a state_dict of PGCGM's model\.Generator(.|\n)*size mismatch for ele_block"):
        gan.load_state_dict(str(path))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(gan.g.ContractError, match=r"junk\.pth: not a torch checkpoint"):
        gan.load_state_dict(str(tmp_path / "junk.pth"))
    torch.save({"epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(gan.g.ContractError, match="expected a PGCGM generator state_dict"):
        gan.load_state_dict(str(tmp_path / "other.pth"))


def test_init_only_writes_upstreams_generator_seeded_and_nothing_else_trains(upstream, tmp_path):
    first = init_weights(upstream, tmp_path, seed=7)
    other = init_weights(upstream, tmp_path, seed=8)
    a = torch.load(first / "model" / "generator_weights.pth")["state_dict"]
    b = torch.load(other / "model" / "generator_weights.pth")["state_dict"]
    assert {k: tuple(v.shape) for k, v in a.items()} == published_shapes(upstream)
    assert not torch.equal(a["noise_block.0.weight"], b["noise_block.0.weight"])  # the seed is used
    torch.manual_seed(7)  # the same seed gives the same weights
    sys.path.insert(0, str(upstream))
    try:
        from model import Generator

        assert torch.equal(Generator(23, 128).state_dict()["noise_block.0.weight"], a["noise_block.0.weight"])
    finally:
        sys.path.remove(str(upstream))
        sys.modules.pop("model", None)
    record = json.loads((first / "model" / "init.json").read_text())
    assert record["seed"] == 7 and record["parameters"] == 4750854 and "untrained" in record["weights"]
    request = {"contract_version": "1.0", "dataset": "perov_5", "splits": {"train": "/data/perov_5/train.csv"},
               "options": {}}
    (tmp_path / "real").mkdir()
    proc, _, _ = run_image("gan", tmp_path / "real", request, upstream, verb="train")
    assert proc.returncode == 2 and "no training code" in proc.stderr


# --- the generation path ------------------------------------------------------------------------


def test_the_whole_upstream_path_runs_on_untrained_weights(upstream, tmp_path):
    weights = init_weights(upstream, tmp_path)
    proc, out, report = run_image("gan", tmp_path, csp_request(), upstream, mounts={"/ckpt": weights}, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for script in ("create_cif.py", "pymatgen_valid.py", "merge_valid.py"):
        assert f"running {script} (" in proc.stdout
    root = tmp_path / "work" / "pgcgm"
    for group, (symbol, elements) in enumerate((("Pm-3m", {"O", "Sr", "Ti"}), ("P4/mmm", {"Ba", "O", "Ti"}))):
        folder = root / f"g{group}"
        for script in ("create_cif", "pymatgen_valid", "merge_valid"):
            assert json.loads((folder / f"gencsp-{script}.json").read_text())["ok"], (folder, script)
        with tarfile.open(folder / "ternary_gen_cifs" / "1.tar.gz") as tar:
            names = tar.getnames()
            text = tar.extractfile(tar.getmembers()[0]).read().decode()
        rows = 2 * OPTIONS["candidates"] if group == 0 else OPTIONS["candidates"]
        assert len(names) == 3 * rows and all(n.split("/")[-1].startswith(symbol.replace("/", "#") + "---") for n in names)
        sites = [line.split()[0] for line in text.splitlines() if line.startswith("  ")]
        assert f"_symmetry_space_group_name_H-M {symbol}" in text and set(sites[-3:]) == elements
        assert (folder / "ternary_symm_cifs").is_dir() and (folder / "ternary_final_cifs").is_dir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["samples"]) == 3  # every sample answered, ok or rejected by the filters
    for sample in manifest["samples"]:
        assert sample["status"] == "ok" or "passed PGCGM's own filters" in sample["message"]
    assert report is not None and sum(report.counts().values()) == 3


def test_a_good_structure_in_create_cifs_layout_passes_the_unchanged_filters(upstream, tmp_path, monkeypatch):
    """The accepted branch, on a structure the untrained generator will not make: SrTiO3 in Pm-3m, written as
    create_cif.py writes (template, the group's operations, one site per element), then the real filters."""
    monkeypatch.setattr(gan, "UPSTREAM", str(upstream))
    template = (upstream / "data" / "cif-template.txt").read_text()
    for key, value in (("SYMMETRY-SG", "Pm-3m"), ("LAL", "3.9"), ("LBL", "3.9"), ("LCL", "3.9"),
                       ("DEGREE1", "90.0"), ("DEGREE2", "90.0"), ("DEGREE3", "90.0")):
        template = template.replace(key, value)
    text = template.replace("TRANSFORMATION\n", (upstream / "data" / "symmetry-equiv" / "Pm-3m.txt").read_text())
    good = text + "  Sr  Sr0  0.0  0.0  0.0  1\n  Ti  Ti1  0.5  0.5  0.5  1\n  O  O2  0.5  0.5  0.0  1\n\n"
    piled = text + "  Sr  Sr0  0.51  0.51  0.51  1\n  Ti  Ti1  0.51  0.51  0.51  1\n  O  O2  0.51  0.51  0.51  1\n\n"
    folder = tmp_path / "g0"
    (folder / "ternary_gen_cifs").mkdir(parents=True)
    for name, body in (("Pm-3m---0_0.cif", piled), ("Pm-3m---1_2.cif", good)):
        write_script(folder / "ternary_gen_cifs" / name, body)
    gan.pack_leftovers(str(folder / "ternary_gen_cifs"))
    runs = [{"cwd": str(folder), "seed": 0, "args": []}]
    [(_, status)] = gan.run_steps(str(tmp_path), "pymatgen", "pymatgen_valid.py", runs)
    assert status["ok"] and status["seconds"] > 0
    merge = [{"cwd": str(folder), "seed": 0, "args": ["--merge_ratio", "0.6", "--dist_ratio", "0.75",
                                                      "--further_merge_ratio", "1.5"]}]
    assert gan.run_steps(str(tmp_path), "merge", "merge_valid.py", merge)[0][1]["ok"]
    finals = gan.final_cifs(str(folder / "ternary_final_cifs" / "merged_cifs_0.60_0.75"))
    assert list(finals) == [1] and finals[1][0][1].endswith("5-SrTiO3-221-1_2.cif")
    assert gan.choose([("a", 0), ("a", 0)], finals, {("a", 0): "SrTiO3"}) == {("a", 0): finals[1][0][1]}


def test_without_weights_the_run_says_how_to_give_them(upstream, tmp_path):
    request = csp_request(checkpoint=None)
    proc, out, report = run_image("gan", tmp_path, request, upstream)
    assert proc.returncode == 1
    messages = {s["message"] for s in json.loads((out / "manifest.json").read_text())["samples"]}
    assert len(messages) == 1 and "no published weights" in messages.pop() and "--checkpoint" in proc.stderr


# --- pgcgm_run.py -------------------------------------------------------------------------------

POOL_SCRIPT = """
import multiprocessing as mp, os, random, sys
import numpy as np
pool = mp.Pool(processes=46)
with open('out.txt', 'w') as handle:
    handle.write('%d %s %s %s' % (pool._processes, os.path.basename(os.getcwd()), np.random.randint(10 ** 6),
                                  ' '.join(sys.argv[1:])))
pool.close()
if os.path.basename(os.getcwd()) == 'b':
    raise ValueError('broken input')
"""


def test_the_runner_caps_pools_seeds_and_records_each_folder(tmp_path):
    script = write_script(tmp_path / "step.py", POOL_SCRIPT)
    folders = [tmp_path / name for name in ("a", "b", "c")]
    for folder in folders:
        folder.mkdir()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"script": str(script), "processes": 2, "runs": [
        {"cwd": str(f), "seed": 5, "args": ["--x", 1]} for f in folders]}))
    proc = subprocess.run([sys.executable, str(CONTAINERS / "gan" / "pgcgm_run.py"), str(spec)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outs = [(f / "out.txt").read_text().split() for f in folders]
    assert [o[0] for o in outs] == ["2"] * 3 and [o[1] for o in outs] == ["a", "b", "c"]
    assert outs[0][2] == outs[1][2] == outs[2][2] and outs[0][3:] == ["--x", "1"]  # seeded per folder
    status = {f.name: json.loads((f / "gencsp-step.json").read_text()) for f in folders}
    assert status["a"]["ok"] and status["c"]["ok"]  # a failing folder does not stop the next one
    assert status["b"] == {"ok": False, "error": "ValueError: broken input", "seconds": status["b"]["seconds"]}
    assert "ValueError: broken input" in proc.stderr


# --- through gencsp: train --init-only, bench --checkpoint FILE, the labelled row ----------------


def test_gencsp_train_init_only_then_bench_labels_every_row_untrained(upstream, home, tmp_path, monkeypatch, capsys):
    from orchestrator import leaderboard
    from orchestrator.cli import main

    monkeypatch.setenv("GENCSP_UPSTREAM", str(upstream))  # the local runtime's stand-in for the image's /opt/PGCGM
    assert main(["train", "--model", "gan", "--init-only", "--device", "cpu", "--runtime", "local",
                 "--train-dir", str(tmp_path / "trains")]) == 0
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "trains").glob("*/train.json")]
    assert record["state"] == "done" and record["scale"] == "none" and record["data"] == {"init_only": True}
    assert "Untrained weights: pipeline check" in capsys.readouterr().out
    weights = f"{record['checkpoint']['path']}/generator_weights.pth"  # a FILE: the generator state_dict
    assert main(["bench", "--model", "gan", "--dataset", "perov_5", "--limit", "12", "--checkpoint", weights,
                 "--runtime", "local", "--option", "candidates=2", "--no-chgnet", "--eval-workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "untrained:" in printed and "say nothing about the published model" in printed  # row and note
    [run] = leaderboard.find_runs(home.parent / "runs")
    info = json.loads((run / "run.json").read_text())
    assert info["weights"]["kind"] == "untrained" and info["weights"]["train_id"] == record["train_id"]
    unsupported = json.loads((run / "unsupported.json").read_text())
    assert unsupported and len(unsupported) < 12  # PGCGM's 20 groups and ternaries of 63 elements
    [entry] = leaderboard.load_entries([run])
    assert entry.evaluated and entry.identity()["weights"] == "untrained: pipeline check"
    for form in ("csv", "markdown", "latex"):
        assert "Untrained weights: pipeline check" in leaderboard.render([entry], form)
