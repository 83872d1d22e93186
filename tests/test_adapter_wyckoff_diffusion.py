"""wyckoff_diffusion adapter against WyckoffDiff's saved list of PyG `Data` and its post-processing CSV."""

from __future__ import annotations

import json

import pytest
import torch
from test_adapter_common import load_adapter, run_image, write_script
from torch_geometric.data import Data

from schemas import SampleRequest, Target

wd = load_adapter("wyckoff_diffusion")
NUM_ELEMENTS = 100


def generated(group: int, fixed: dict[str, int], free: dict[str, dict[int, int]]) -> Data:
    """One sample as WyckoffDiff saves it (the fields of WyckoffDataset.get, 'a' first).

    fixed: letter -> atomic number on a 0-DoF position; free: letter -> {atomic number: orbits}.
    """
    from pyxtal.symmetry import Group

    positions = sorted(Group(group).Wyckoff_positions, key=lambda wp: wp.letter if wp.letter.islower() else "{")
    zero = torch.tensor([wp.get_dof() == 0 for wp in positions])
    x_0 = torch.tensor([fixed.get(wp.letter, 0) for wp, z in zip(positions, zero, strict=True) if z])
    x_inf = torch.zeros(int((~zero).sum()), NUM_ELEMENTS, dtype=torch.long)
    free_letters = [wp.letter for wp, z in zip(positions, zero, strict=True) if not z]
    for letter, counts in free.items():
        for number, orbits in counts.items():
            x_inf[free_letters.index(letter), number - 1] = orbits
    n = len(positions)
    return Data(x_0_dof=x_0, x_inf_dof=x_inf, edge_index=torch.stack([torch.arange(n).repeat_interleave(n),
                                                                       torch.arange(n).repeat(n)]),
                space_group=torch.tensor(group), multiplicities=torch.tensor([wp.multiplicity for wp in positions]),
                num_pos=torch.tensor([n]), num_nodes=n, zero_dof=zero, num_0_dof=zero.sum(), num_inf_dof=(~zero).sum(),
                wyckoff_pos_idx=torch.arange(n), degrees_of_freedom=torch.tensor([wp.get_dof() for wp in positions]))


def test_decoding_a_perovskite_and_free_positions():
    group, sites = wd.wyckoff_sites(generated(221, {"a": 38, "b": 22, "c": 8}, {}), wd.element_symbol)
    assert group == 221
    assert sites == [{"letter": "a", "multiplicity": 1, "element": "Sr"},
                     {"letter": "b", "multiplicity": 1, "element": "Ti"},
                     {"letter": "c", "multiplicity": 3, "element": "O"}]
    group, sites = wd.wyckoff_sites(generated(62, {}, {"c": {8: 2, 12: 1}}), wd.element_symbol)
    assert group == 62 and [(s["element"], s["letter"], s["multiplicity"]) for s in sites] == [
        ("O", "c", 4), ("O", "c", 4), ("Mg", "c", 4)]  # by element number
    with pytest.raises(ValueError, match="no atoms"):
        wd.wyckoff_sites(generated(221, {}, {}), wd.element_symbol)


def test_decoding_the_full_matrix_when_split_fields_are_absent():
    sample = generated(221, {"a": 38, "b": 22, "c": 8}, {})
    x = torch.zeros(len(sample.zero_dof), NUM_ELEMENTS + 1, dtype=torch.long)
    x[sample.zero_dof, 0] = sample.x_0_dof
    plain = Data(x=x, zero_dof=sample.zero_dof, space_group=sample.space_group, wyckoff_pos_idx=sample.wyckoff_pos_idx)
    assert wd.wyckoff_sites(plain, wd.element_symbol)[1] == [{"letter": "a", "element": "Sr"},
                                                             {"letter": "b", "element": "Ti"},
                                                             {"letter": "c", "element": "O"}]


# --- main.py replaced by a stand-in writing WyckoffDiff's files --------------------------------

MAIN = """
import argparse, csv, os, sys, torch
sys.path.insert(0, {tests!r})
from test_adapter_wyckoff_diffusion import generated
parser = argparse.ArgumentParser()
parser.add_argument('--mode'); parser.add_argument('--load'); parser.add_argument('--dataset')
parser.add_argument('--num_samples', type=int); parser.add_argument('--seed', type=int, default=42)
for flag in ('--enrich_data', '--save_protostructures', '--disable_cuda'):
    parser.add_argument(flag, action='store_true')
args = parser.parse_args()
MODE = {mode!r}
assert 'checkpoints' in args.load.split('/')
if args.mode == 'generate':
    if MODE == 'crash':
        sys.exit('RuntimeError: CUDA out of memory')
    n = args.num_samples - (1 if MODE == 'short' else 0)
    samples = [generated(221, {{'a': 38, 'b': 22, 'c': 8}}, {{}}) if k % 2 == 0 else
               generated(62, {{}}, {{'c': {{12: 1, 8: 1}}}}) for k in range(n)]
    folder = os.path.dirname(args.load)
    torch.save(samples, os.path.join(folder, 'generated_samples_N=%d_seed=%d.pt' % (args.num_samples, args.seed)))
else:
    out = os.path.join(args.load, 'post_processed')
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(args.load):
        if name.startswith('generated_samples'):
            samples = torch.load(os.path.join(args.load, name), weights_only=False)
            torch.save(samples, os.path.join(out, name))
            with open(os.path.join(out, name[:-3] + '_protostructures.csv'), 'w', newline='') as f:
                w = csv.writer(f)
                w.writerow(['protostructure', 'prototype'])
                for k in range(len(samples)):
                    w.writerow(['' if k == 1 else 'ABC3_cP5_221_a_b_c:O-Sr-Ti', 'ABC3_cP5_221_a_b_c'])
"""


def fake_upstream(tmp_path, mode="ok"):
    upstream = tmp_path / "wyckoffdiff"
    write_script(upstream / "main.py", MAIN.format(tests=str(__import__("conftest").ROOT / "tests"), mode=mode))
    return upstream


def trained_checkpoint(tmp_path):
    folder = tmp_path / "trained" / "model"
    (folder / "checkpoints" / "07-05-2026-run").mkdir(parents=True)
    (folder / "checkpoints" / "07-05-2026-run" / "best_model.pt").write_bytes(b"weights")
    (folder / wd.TRAIN_INFO).write_text(json.dumps({"dataset": "mp20", "source": "mp_20"}))
    return folder


def request():
    return SampleRequest(task="generate", seed=11, checkpoint="/ckpt/model",
                         targets=[Target(id="gen-00000", samples=3), Target(id="gen-00001", samples=1)])


def test_generated_data_become_wyckoff_records(tmp_path):
    proc, out, report = run_image("wyckoff_diffusion", tmp_path, request(), fake_upstream(tmp_path),
                                  {"/ckpt/model": trained_checkpoint(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {(r["target_id"], r["sample_index"]): r for r in report.rows}
    assert rows["gen-00000", 1]["reason"] == "model_failed"  # no protostructure for sample 1
    assert "protostructure" in rows["gen-00000", 1]["message"]
    assert report.counts() == {"accepted": 3, "rejected: model_failed": 1}
    first = json.loads(rows["gen-00000", 0]["wyckoff"])
    assert first["space_group"] == 221 and [s["element"] for s in first["sites"]] == ["Sr", "Ti", "O"]
    assert json.loads(rows["gen-00001", 0]["wyckoff"])["space_group"] == 62
    assert report.manifest.model.checkpoint_sha256 is not None


@pytest.mark.parametrize("mode, code, accepted", [("short", 0, 2), ("crash", 1, 0)])
def test_upstream_failures(tmp_path, mode, code, accepted):
    proc, out, report = run_image("wyckoff_diffusion", tmp_path, request(), fake_upstream(tmp_path, mode),
                                  {"/ckpt/model": trained_checkpoint(tmp_path)})
    assert proc.returncode == code
    assert report.manifest.complete
    assert report.counts().get("accepted", 0) == accepted
    assert sum(report.counts().values()) == 4


def test_splits_become_wyckoffdiff_raw_csvs(tmp_path, home):
    import pandas as pd

    from orchestrator import datasets

    source = datasets.fetch("mini", "test", progress=False)
    target = tmp_path / "data" / "mp20" / "raw" / "mp20_test.csv"
    kept, skipped = wd.convert_split(str(source), str(target), lambda s: s.composition.reduced_formula,
                                     prop="formation_energy_per_atom")
    frame = pd.read_csv(target)
    assert kept == len(frame) == len(pd.read_csv(source)) and skipped == 0
    assert list(frame.columns) == ["material_id", "wyckoff_spglib", "formation_energy_per_atom"]
