"""cdvae adapter against files in CDVAE's exact output format (eval_gen.pt) and stand-in upstream scripts."""

from __future__ import annotations

import argparse
import json
import stat

import pytest
import torch
from test_adapter_common import load_adapter, run_image, write_script

from orchestrator.structures import parse_cif
from schemas import SampleRequest, Target

cdvae = load_adapter("cdvae")


def eval_dict(counts_per_eval, seed=0, types=None):
    """evaluate.py's `eval_gen.pt`: tensors with the leading num_evals dimension, plus its bookkeeping keys."""
    generator = torch.Generator().manual_seed(seed)
    evals = len(counts_per_eval)
    counts = torch.tensor(counts_per_eval, dtype=torch.long)
    total = int(counts[0].sum()) if counts.numel() else 0
    atom_types = types if types is not None else torch.randint(1, 90, (evals, total), generator=generator)
    return {
        "eval_setting": argparse.Namespace(tasks=["gen"], num_evals=evals, label=""),
        "frac_coords": torch.rand(evals, total, 3, generator=generator),
        "num_atoms": counts,
        "atom_types": atom_types,
        "lengths": 4 + 2 * torch.rand(evals, counts.shape[1], 3, generator=generator),
        "angles": torch.full((evals, counts.shape[1], 3), 90.0),
        "all_frac_coords_stack": [],
        "all_atom_types_stack": [],
        "time": 1.5,
    }


def test_eval_tensors_split_per_crystal_eval_by_eval(tmp_path):
    data = eval_dict([[2, 3, 1], [2, 3, 1]])
    path = tmp_path / "eval_gen.pt"
    torch.save(data, path)
    crystals = cdvae.crystals_from_eval(cdvae.load_eval(path))
    assert [len(c[2]) for c in crystals] == [2, 3, 1, 2, 3, 1]
    lengths, angles, numbers, frac = crystals[4]  # eval 1, crystal 1: atoms 2..4
    assert numbers.tolist() == data["atom_types"][1, 2:5].tolist()
    assert frac.tolist() == data["frac_coords"][1, 2:5].tolist()
    structure = parse_cif(cdvae.crystal_cif(lengths, angles, numbers, frac))
    assert len(structure) == 3
    assert structure.lattice.abc == pytest.approx(tuple(data["lengths"][1, 1].tolist()), abs=1e-4)


def test_type_scores_are_argmaxed_and_bad_files_are_named():
    data = eval_dict([[2]])
    data["atom_types"] = torch.nn.functional.one_hot(torch.tensor([[7, 10]]), 100).float()  # N, Na
    (crystal,) = cdvae.crystals_from_eval(data)
    assert crystal[2].tolist() == [8, 11]
    data = eval_dict([[2, 2]])
    data["num_atoms"] = torch.tensor([[2, 3]])
    with pytest.raises(cdvae.UpstreamError, match="num_atoms sums to 5 but there are 4 atoms"):
        cdvae.crystals_from_eval(data)
    with pytest.raises(cdvae.UpstreamError, match="lacks num_atoms"):
        cdvae.crystals_from_eval({k: v for k, v in data.items() if k != "num_atoms"})


def test_unphysical_crystals_are_refused():
    data = eval_dict([[2]])
    data["lengths"][0, 0, 0] = float("nan")
    (crystal,) = cdvae.crystals_from_eval(data)
    with pytest.raises(ValueError, match="non-finite"):
        cdvae.crystal_cif(*crystal)
    with pytest.raises(ValueError, match="outside 1..100"):
        cdvae.crystal_cif([4, 4, 4], [90, 90, 90], [0, 8], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_generate_shape_covers_the_request():
    assert cdvae.gen_shape(10, 64) == (1, 10)
    assert cdvae.gen_shape(130, 64) == (3, 64)


# --- the image's entry point on the host, with the upstream replaced by stand-ins --------------

EVALUATE = """
import argparse, sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_adapter_cdvae import eval_dict
parser = argparse.ArgumentParser()
parser.add_argument('--model_path', required=True)
parser.add_argument('--tasks', nargs='+')
for name in ('--n_step_each', '--num_evals', '--num_batches_to_samples', '--batch_size'):
    parser.add_argument(name, type=int)
for name in ('--step_lr', '--min_sigma'):
    parser.add_argument(name, type=float)
parser.add_argument('--label', default='')
args = parser.parse_args()
mode = {mode!r}
if mode == 'crash':
    raise SystemExit('RuntimeError: CUDA out of memory')
crystals = 0 if mode == 'empty' else args.num_batches_to_samples * args.batch_size
data = eval_dict([[2 + k % 3 for k in range(crystals)]] * args.num_evals, seed=torch.initial_seed() % 1000)
data['eval_setting'] = args
torch.save(data, Path(args.model_path) / 'eval_gen_{{}}.pt'.format(args.label))
"""

EVAL_UTILS = """
import torch
from types import SimpleNamespace
CRASH_AT_BATCH = {crash!r}

class Model:
    hparams = SimpleNamespace(hidden_dim=8)
    calls = 0
    def to(self, device):
        return self
    def langevin_dynamics(self, z, ld_kwargs, gt_num_atoms=None, gt_atom_types=None):
        Model.calls += 1
        if Model.calls == CRASH_AT_BATCH:
            raise RuntimeError('CUDA error: an illegal memory access was encountered')
        n = int(gt_num_atoms.sum())
        return {{'num_atoms': gt_num_atoms, 'lengths': torch.full((z.shape[0], 3), 5.0),
                'angles': torch.full((z.shape[0], 3), 90.0), 'frac_coords': torch.rand(n, 3),
                'atom_types': gt_atom_types, 'is_traj': False}}

def load_model(model_path, load_data=False, testing=True):
    assert (model_path / 'hparams.yaml').exists()
    return Model(), None, None
"""


def fake_upstream(tmp_path, mode="ok", crash_at_batch=None):
    upstream = tmp_path / "cdvae-upstream"
    write_script(upstream / "scripts" / "evaluate.py", EVALUATE.format(tests=str(__import__("conftest").ROOT / "tests"),
                                                                      mode=mode))
    write_script(upstream / "scripts" / "eval_utils.py", EVAL_UTILS.format(crash=crash_at_batch))
    return upstream


def checkpoint_folder(tmp_path):
    """A trained CDVAE run folder, mounted read-only as the runtimes do."""
    folder = tmp_path / "ckpt" / "model"
    folder.mkdir(parents=True)
    for name in ("hparams.yaml", "lattice_scaler.pt", "prop_scaler.pt", "epoch=12-step=340.ckpt"):
        (folder / name).write_text("stand-in\n")
    for path in (*folder.iterdir(), folder):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return folder


def request(task, batch_size=4):
    if task == "generate":
        targets = [Target(id="gen-00000", samples=5), Target(id="gen-00001", samples=2)]
    else:
        targets = [Target(id="srtio3", composition={"Sr": 1, "Ti": 1, "O": 3}, samples=3),
                   Target(id="nacl", composition={"Na": 1, "Cl": 1}, samples=2)]
    return SampleRequest(task=task, seed=7, batch_size=batch_size, checkpoint="/ckpt/model", targets=targets,
                         options={"n_step_each": 100, "step_lr": 1e-4, "min_sigma": 0.0})


def test_generate_runs_evaluate_on_a_writable_copy(tmp_path):
    ckpt = checkpoint_folder(tmp_path)
    proc, out, report = run_image("cdvae", tmp_path, request("generate"), fake_upstream(tmp_path),
                                  {"/ckpt/model": ckpt})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report.counts() == {"accepted": 7}
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(
        ["hparams.yaml", "lattice_scaler.pt", "prop_scaler.pt", "epoch=12-step=340.ckpt"])
    assert (tmp_path / "work" / "cdvae-model" / "eval_gen_gencsp.pt").exists()
    sizes = [row["num_atoms"] for row in report.rows]
    assert sizes == [2, 3, 4, 2, 3, 4, 2]  # crystal k answers sample k
    # the one upstream call's time is shared equally by its samples
    assert len({row["seconds"] for row in report.rows}) == 1 and report.rows[0]["seconds"] > 0
    assert len({row["cpu_seconds"] for row in report.rows}) == 1 and report.rows[0]["cpu_seconds"] > 0


@pytest.mark.parametrize("mode, code, message", [
    ("empty", 0, "fewer crystals than requested"),
    ("crash", 1, "CDVAE exited with status 1"),
])
def test_generate_failures_fail_every_sample(tmp_path, mode, code, message):
    proc, out, report = run_image("cdvae", tmp_path, request("generate"), fake_upstream(tmp_path, mode),
                                  {"/ckpt/model": checkpoint_folder(tmp_path)})
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert report.manifest.complete
    assert report.counts() == {"rejected: model_failed": 7}
    assert all(message in row["message"] for row in report.rows)


def test_csp_forces_the_target_composition_and_keeps_batches_done_before_a_crash(tmp_path):
    proc, out, report = run_image("cdvae", tmp_path, request("csp", batch_size=2),
                                  fake_upstream(tmp_path, crash_at_batch=2), {"/ckpt/model": checkpoint_folder(tmp_path)})
    assert proc.returncode == 1
    rows = {(r["target_id"], r["sample_index"]): r for r in report.rows}
    assert [rows["srtio3", i]["status"] for i in range(3)] == ["accepted", "accepted", "rejected"]
    assert rows["srtio3", 0]["formula"] == "SrTiO3" and rows["srtio3", 0]["composition_match"]
    assert "status 1" in rows["nacl", 1]["message"]
    spec = json.loads((tmp_path / "work" / "csp_spec.json").read_text())
    assert spec[0]["atom_types"] == [8, 8, 8, 38, 22] and spec[3]["atom_types"] == [17, 11]


def test_without_checkpoint_every_sample_says_how_to_get_one(tmp_path):
    plain = request("csp").model_copy(update={"checkpoint": None})
    proc, out, report = run_image("cdvae", tmp_path, plain, fake_upstream(tmp_path))
    assert proc.returncode == 1
    assert all("gencsp train --model cdvae" in row["message"] for row in report.rows)


RUN_PY = """
import json, sys
from pathlib import Path
overrides = dict(a.split('=', 1) for a in sys.argv[1:])
run_dir = Path(overrides['hydra.run.dir'])
run_dir.mkdir(parents=True)
(Path({record!r})).write_text(json.dumps(sys.argv[1:]))
for name in ('hparams.yaml', 'lattice_scaler.pt', 'prop_scaler.pt', 'epoch=2-step=30.ckpt'):
    (run_dir / name).write_text('trained')
"""


def test_train_runs_the_hydra_entry_point_on_the_mounted_splits(tmp_path):
    upstream = fake_upstream(tmp_path)
    record = tmp_path / "argv.json"
    write_script(upstream / "cdvae" / "run.py", RUN_PY.format(record=str(record)))
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        (data / f"{split}.csv").write_text(",material_id,cif,heat_ref\n")
    train_request = {"contract_version": "1.0", "dataset": "perov_5", "seed": 3, "device": "cpu", "max_epochs": 2,
                     "output_dir": "/io/out", "options": {"dataset_kind": "perovskite", "property": "heat_ref"},
                     "splits": {s: f"/data/perov_5/{s}.csv" for s in ("train", "val", "test")}}
    proc, out, _ = run_image("cdvae", tmp_path, train_request, upstream, {"/data/perov_5": data}, verb="train")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argv = json.loads(record.read_text())
    assert argv[:1] == ["data=perov"]
    for expected in (f"data.root_path={data}", f"hydra.run.dir={out / 'model'}", "logging.wandb.mode=offline",
                     "train.pl_trainer.gpus=0", "data.train_max_epochs=2", "data.prop=heat_ref",
                     "train.random_seed=3"):
        assert expected in argv
    assert (out / "model" / "epoch=2-step=30.ckpt").exists()
