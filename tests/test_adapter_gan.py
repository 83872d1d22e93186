"""gan (PGCGM) adapter: chosen groups/elements through the generator, upstream filters replaced by stand-ins
that write merge_valid.py's final CIF names."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from test_adapter_common import CONTAINERS, load_adapter, run_image, write_script

from orchestrator import models
from schemas import Conditioning, SampleRequest, Target

gan = load_adapter("gan")
PGCGM_SYMBOLS = ["I4/mmm", "P6_3/mmc", "Immm", "Fm-3m", "Fd-3m", "Pnma", "P6/mmm", "R-3", "R-3m", "Pm-3m", "R-3c",
                 "P-3m1", "P4/mmm", "Cmcm", "P4/nmm", "F-43m", "I-42d", "P6_3mc", "I4_1/amd", "I4/mcm"]


def test_the_cards_20_groups_are_the_generators_symbols():
    card = models.get("gan")
    assert sorted(gan.group_symbols(PGCGM_SYMBOLS)) == sorted(card.limits.space_groups)
    assert gan.group_symbols(["Pm-3m", "P4/nmm"]) == {221: "Pm-3m", 129: "P4/nmm"}


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


# --- the whole pipeline with the upstream parts replaced --------------------------------------

MODEL_PY = """
import torch
from torch import nn
class Generator(nn.Module):
    def __init__(self, ele_vec_dim=23, noise_dim=128):
        super().__init__()
        self.coords = nn.Linear(noise_dim, 27)
        self.length = nn.Linear(noise_dim, 3)
    def forward(self, sp_inputs, ele_inputs, z):
        assert sp_inputs.shape[1:] == (192, 4, 4) and ele_inputs.shape[1:] == (4, 3)
        return torch.tanh(self.coords(z)).view(-1, 3, 3, 3), torch.tanh(self.length(z))
"""

SIMPLE_DIST = """
import torch
class sp_lookup:
    def __init__(self, device, sp_dict):
        self.n = len(sp_dict)
    @property
    def symm_op_collection(self):
        return torch.zeros(self.n, 192, 4, 4)
"""

# pymatgen_valid.py / merge_valid.py stand-ins: read the archives the generator step wrote, keep rot-0 CIFs
# of even rows (odd rows are "filtered out"), and name them as the upstream does; optional crash.
VALID = """
import os, shutil, sys, tarfile
for name in os.listdir('ternary_gen_cifs'):
    with tarfile.open(os.path.join('ternary_gen_cifs', name)) as tar:
        members = tar.getmembers()
    assert members and all('---' in m.name for m in members), name
shutil.copytree('ternary_gen_cifs', 'ternary_symm_cifs', dirs_exist_ok=True)
"""

MERGE = """
import argparse, os, tarfile, sys
from pymatgen.core import Structure
from pymatgen.symmetry.groups import SpaceGroup
parser = argparse.ArgumentParser()
for name in ('--merge_ratio', '--dist_ratio', '--further_merge_ratio'):
    parser.add_argument(name, type=float)
args = parser.parse_args()
if {crash!r}:
    sys.exit('Traceback: BrokenPipeError in multiprocessing pool')
out = 'ternary_final_cifs/merged_cifs_%.2f_%.2f/' % (args.merge_ratio, args.dist_ratio)
os.makedirs(out)
for name in sorted(os.listdir('ternary_symm_cifs')):
    with tarfile.open(os.path.join('ternary_symm_cifs', name)) as tar:
        for member in tar.getmembers():
            sg, rest = member.name.split('/')[-1].split('---')
            row, rot = rest[:-4].split('_')
            if rot != '0' or int(row) % 2:
                continue
            crystal = Structure.from_str(tar.extractfile(member).read().decode(), fmt='cif')
            sgnum = SpaceGroup(sg.replace('#', '/')).int_number
            crystal.to(filename=out + '%d-%s-%d-%s_%s.cif' % (len(crystal), crystal.composition.reduced_formula,
                                                            sgnum, row, rot))
"""


def fake_upstream(tmp_path, crash=False):
    from pymatgen.symmetry.groups import SpaceGroup

    upstream = tmp_path / "PGCGM"
    write_script(upstream / "model.py", MODEL_PY)
    write_script(upstream / "simple_dist.py", SIMPLE_DIST)
    write_script(upstream / "pymatgen_valid.py", VALID)
    write_script(upstream / "merge_valid.py", MERGE.format(crash=crash))
    data = upstream / "data"
    (data / "symmetry-equiv").mkdir(parents=True)
    symbols = ["Pm-3m", "Fm-3m"]
    aux = [np.ones((2, 3, 3)) / 3, np.full((2, 3), 90.0), 1.0, np.full(3, 0.5), {s: i for i, s in enumerate(symbols)}, [0.5, 0.5]]
    (data / "paras.pickle").write_bytes(pickle.dumps(aux))
    np.save(data / "elements_features.npy", np.random.default_rng(0).random((64, 4)))
    (data / "elements_id_NoPo.json").write_text(json.dumps({"O": 36, "Sr": 53, "Ti": 57, "Na": 33, "Cl": 12}))
    (data / "cif-template.txt").write_text(
        "# generated using pymatgen\ndata_ANONYMOUS\n_symmetry_space_group_name_H-M SYMMETRY-SG\n"
        "_cell_length_a   LAL\n_cell_length_b   LBL\n_cell_length_c   LCL\n_cell_angle_alpha   DEGREE1\n"
        "_cell_angle_beta   DEGREE2\n_cell_angle_gamma   DEGREE3\nloop_\nTRANSFORMATION\nloop_\n"
        " _atom_site_type_symbol\n _atom_site_label\n _atom_site_fract_x\n _atom_site_fract_y\n _atom_site_fract_z\n"
        " _atom_site_occupancy\n")
    for symbol in symbols:
        ops = "".join(f"  {k + 1}  '{op.as_xyz_str()}'\n" for k, op in enumerate(SpaceGroup(symbol).symmetry_ops))
        (data / "symmetry-equiv" / f"{symbol}.txt").write_text(
            " _symmetry_equiv_pos_site_id\n _symmetry_equiv_pos_as_xyz\n" + ops)
    generator = load_adapter("gan", "pgcgm_generate")
    weights = upstream / "models" / "frac12" / "generator_weights.pth"
    weights.parent.mkdir(parents=True)
    import sys

    sys.path.insert(0, str(upstream))
    from model import Generator  # the stand-in above

    sys.path.remove(str(upstream))
    sys.modules.pop("model")
    torch.save({"state_dict": Generator(4, generator.LATENT_DIM).state_dict()}, weights)
    return upstream


def request(task="csp"):
    if task == "generate":
        return SampleRequest(task="generate", seed=3, targets=[Target(id="gen-00000", samples=2)],
                             options={"candidates": 2, "merge_ratio": 0.6, "dist_ratio": 0.75,
                                      "further_merge_ratio": 1.5})
    return SampleRequest(task="csp", seed=3, targets=[
        Target(id="srtio3", composition={"Sr": 1, "Ti": 1, "O": 3}, samples=2,
               conditioning=Conditioning(space_group=221))],
        options={"candidates": 2, "merge_ratio": 0.6, "dist_ratio": 0.75, "further_merge_ratio": 1.5})


def test_candidates_go_through_the_generator_and_the_upstream_filters(tmp_path):
    proc, out, report = run_image("gan", tmp_path, request(), fake_upstream(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = json.loads((tmp_path / "work" / "pgcgm" / "spec.json").read_text())
    assert spec["rows"] == [{"space_group": "Pm-3m", "elements": ["O", "Sr", "Ti"]}] * 4
    assert report.counts() == {"accepted": 2}  # rows 0 and 2 survive: one per sample
    assert {r["num_elements"] for r in report.rows} <= {1, 2, 3}


def test_generate_draws_groups_and_elements(tmp_path):
    proc, out, report = run_image("gan", tmp_path, request("generate"), fake_upstream(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report.counts() == {"accepted": 2}


def test_a_crashing_filter_fails_every_sample(tmp_path):
    proc, out, report = run_image("gan", tmp_path, request(), fake_upstream(tmp_path, crash=True))
    assert proc.returncode == 1
    assert report.counts() == {"rejected: model_failed": 2}
    assert all("merge_valid.py exited with status 1" in r["message"] for r in report.rows)


def test_driver_writes_create_cif_layout_and_packs_the_last_partial_archive(tmp_path):
    import tarfile

    upstream = fake_upstream(tmp_path)
    generator = load_adapter("gan", "pgcgm_generate")
    generator.UPSTREAM = str(upstream)
    generator.WEIGHTS = str(upstream / "models" / "frac12" / "generator_weights.pth")
    rows = [{"space_group": "Fm-3m", "elements": ["Na", "Cl", "O"]}] * 3
    assert generator.generate({"seed": 1, "rows": rows}, str(tmp_path / "mat")) == 3
    archives = sorted(p.name for p in (tmp_path / "mat").iterdir())
    assert archives == ["1.tar.gz"]
    with tarfile.open(tmp_path / "mat" / "1.tar.gz") as tar:
        names = sorted(m.name.split("/")[-1] for m in tar.getmembers())
        text = tar.extractfile(tar.getmembers()[0]).read().decode()
    assert names == [f"Fm-3m---{r}_{rot}.cif" for r in range(3) for rot in range(3)]
    assert "_symmetry_space_group_name_H-M Fm-3m" in text and "  Na  Na0  " in text


def test_targets_outside_the_generator_are_contract_errors():
    import types

    session = types.SimpleNamespace(task="csp", requested=lambda: [
        ({"id": "x", "composition": {"Na": 1, "Cl": 1}, "conditioning": {"space_group": 225}}, 0)])
    with pytest.raises(Exception, match="ternaries"):
        gan.generator_rows(session, {225: "Fm-3m"}, 2)
    assert (CONTAINERS / "gan" / "pgcgm_generate.py").exists()
