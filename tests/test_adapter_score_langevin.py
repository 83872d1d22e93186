"""score_langevin adapter against diffusion-atoms' CIF tree (jarvis-written files, its folder layout).

main.py is replaced by a stand-in that reads the same arguments and files and writes the same tree,
batch by batch, and can die the way the real one does (an exception logged, exit status 0). The
real upstream runs in the image: tests/test_score_langevin_image.py.
"""

from __future__ import annotations

import json
import types

import pytest
import yaml
from test_adapter_common import load_adapter, run_image, write_script

from orchestrator.targets import truth_symmetry
from schemas import Conditioning, SampleRequest, Target

score = load_adapter("score_langevin")


def perovskite_target(target_id="srtio3", samples=2):
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    group, sites = truth_symmetry(structure)
    return Target(id=target_id, composition={"Sr": 1, "Ti": 1, "O": 3}, samples=samples,
                  conditioning=Conditioning(space_group=group, wyckoff=list(sites)))


def rocksalt_target(samples=2):
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    group, sites = truth_symmetry(nacl)
    return Target(id="nacl", composition={"Na": 4, "Cl": 4}, samples=samples,
                  conditioning=Conditioning(space_group=group, wyckoff=list(sites)))


def session_of(targets, **options):
    request = SampleRequest(task="csp", targets=targets).model_dump(mode="json", exclude_none=True)
    requested = [(t, i) for t in request["targets"] for i in range(t["samples"])]
    return types.SimpleNamespace(options={"T": 80, **options}, requested=lambda: requested)


def test_asymmetric_unit_comes_from_the_wyckoff_orbits():
    target = perovskite_target().model_dump(mode="json", exclude_none=True)
    assert target["conditioning"]["space_group"] == 221
    assert dict(score.asymmetric_composition(target)) == {"O": 1, "Sr": 1, "Ti": 1}
    assert score.folder_name(score.asymmetric_composition(target), 221) == "O1Sr1Ti1_221"
    with pytest.raises(Exception, match="needs the space group and Wyckoff sites"):
        score.asymmetric_composition({"id": "x", "composition": {"Na": 1}})


def test_targets_of_one_folder_share_an_order_and_a_target_without_symmetry_is_refused_alone():
    bare = Target(id="bare", composition={"Na": 1, "Cl": 1}, samples=1)
    session = session_of([perovskite_target("a", 2), bare, perovskite_target("b", 1)])
    jobs, refused = score.jobs_of(session)
    order = score.sampling_order("gencsp-1", jobs, session.options)
    assert order["name"] == "gencsp-1" and len(order["orders"]) == 1
    assert order["orders"][0] == {"space_group": [221], "composition": {"O": 1, "Sr": 1, "Ti": 1}, "count": 3,
                                  "T": 80, "random_positions": True, "random_lattice": True, "only_final": True}
    assert [(j.folder, j.samples) for j in jobs] == [("O1Sr1Ti1_221", [("a", 0), ("a", 1), ("b", 0)])]
    assert [(t, i) for t, i, _ in refused] == [("bare", 0)] and "Wyckoff" in refused[0][2]


def test_a_crash_fails_its_batch_and_leaves_the_rest_for_another_run(tmp_path):
    jobs = [score.Job("A1_221", 221, {"A": 1}, [("a", 0), ("a", 1), ("a", 2)]),
            score.Job("B1_225", 225, {"B": 1}, [("b", 0), ("b", 1)])]
    for name in ("1.cif", "2.cif"):  # batch size 2: the first batch was written, the second died
        write_script(tmp_path / "A1_221" / name, "data_x\n")
    produced, failed, rest = score.split_outcome(jobs, tmp_path, batch_size=2, crashed=True)
    assert sorted(produced) == [("a", 0), ("a", 1)]
    assert failed == [("a", 2), ("b", 0)]
    assert [(j.folder, j.samples) for j in rest] == [("B1_225", [("b", 1)])]
    produced, failed, rest = score.split_outcome(jobs, tmp_path, batch_size=2, crashed=False)
    assert failed == [("a", 2), ("b", 0), ("b", 1)] and rest == []  # no crash: a missing file is final


def test_last_error_is_the_end_of_the_logged_traceback():
    log = "INFO - main.py - Using device: cpu\nERROR - main.py - Traceback (most recent call last):\n" \
          "  File \"runners/diffusion.py\", line 3\nAttributeError: 'Namespace' object has no attribute 'sampling'\n" \
          "INFO - diffusion.py - later chatter\n"
    assert score.last_error(log) == "AttributeError: 'Namespace' object has no attribute 'sampling'"
    assert score.last_error("INFO - fine\n") is None


def test_training_config_bounds_epochs_and_saves_after_the_last_step(tmp_path, monkeypatch):
    upstream = fake_upstream(tmp_path)
    monkeypatch.setattr(score, "UPSTREAM", str(upstream))
    section = {"data": "/w/train", "data_test": "/w/test", "space_groups": "/sg", "sg_index": "/w/sg_index.json"}
    config = score.training_config({"batch_size": 8}, section, max_epochs=3, train_count=20)
    # 3 epochs of ceil(20 / 8) = 3 batches: 9 steps, the last one is step 8 (saved: 8 % 8 == 0)
    assert config["training"] == {"batch_size": 8, "n_epochs": 3, "snapshot_freq": 8}
    assert config["data"] == {**section, "num_workers": 0} and config["model"] == {"cutoff": 5.0}
    one = score.training_config({}, section, max_epochs=1, train_count=5)
    assert one["training"]["snapshot_freq"] == 1  # a single step: saved at step 0 (and never divides by 0)
    full = score.training_config({}, section, max_epochs=None, train_count=5)
    assert full["training"] == {"batch_size": 32, "n_epochs": 10000, "snapshot_freq": 500}  # upstream's recipe
    assert yaml.safe_load(score.yaml_text({"eps": 1e-08}))["eps"] == 1e-08  # a float again, as main.py needs


# Written by upstream's sampler (smoke-trained weights, T=1, space group 123): round_positions snapped four O
# images, more than 0.4 A apart before, onto one special position; pymatgen then refuses the whole file.
SNAPPED = """CIF file written using JARVIS-Tools package.
data_Tl4RuO2F4
_symmetry_space_group_name_H-M  'P 1'
_cell_length_a       10.1616
_cell_length_b       10.1616
_cell_length_c       10.0485
_cell_angle_alpha    90
_cell_angle_beta     90
_cell_angle_gamma    90

_symmetry_Int_Tables_number  1
_chemical_formula_structural  Tl4RuO2F4
_chemical_formula_sum  F8O4Ru2Tl8
_cell_volume  1037.5972742637452
_cell_formula_units_Z  2
loop_
  _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
 1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_fract_occupancy
 F  F1  1  0.32291  0.67709  0.72063  1
 O  O1  1  1.00000  0.00000  0.50000  1
 O  O2  1  1.00000  0.00000  0.50000  1
 O  O3  1  1.00000  0.00000  0.50000  1
 O  O4  1  0.00000  0.00000  0.50000  1
 Ru  Ru1  1  0.50000  0.50000  0.92252  1
 Tl  Tl1  1  0.71879  0.71879  0.16115  1
"""


def test_atoms_snapped_onto_one_site_fail_their_sample_saying_so(tmp_path):
    path = tmp_path / "1.cif"
    path.write_text(SNAPPED)
    with pytest.raises(ValueError, match=r"^1\.cif: 3 atoms on a site another atom holds"):
        score.cif_from_jarvis(str(path))
    fine = tmp_path / "2.cif"
    one_o = SNAPPED.split(" O  O2")[0] + SNAPPED.split(" O  O4  1  0.00000  0.00000  0.50000  1\n")[1]
    fine.write_text(one_o)
    assert score.atoms_on_taken_sites(str(fine)) == 0
    assert "Tl" in score.cif_from_jarvis(str(fine))
    broken = tmp_path / "3.cif"
    broken.write_text("data_x\n_cell_length_a 1\n")
    with pytest.raises(ValueError, match=r"^3\.cif: "):
        score.cif_from_jarvis(str(broken))


# --- main.py replaced by a stand-in writing jarvis CIFs in its tree ---------------------------

MAIN = '''
import argparse, json, logging, os, sys, traceback
import yaml
parser = argparse.ArgumentParser()
for name in ("--config", "--doc", "--sampling_order_path"):
    parser.add_argument(name)
parser.add_argument("--seed", type=int)
parser.add_argument("--sample", action="store_true")
parser.add_argument("--ni", action="store_true")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(levelname)s - %(filename)s - %(message)s")
MODE = {mode!r}

def jarvis_cif(elements, coords, a):
    # Atoms.write_cif(..., with_spg_info=False) of jarvis-tools 2023.8.10, line for line
    lines = ["CIF file written using JARVIS-Tools package.", "data_X", "_symmetry_space_group_name_H-M  'P 1'"]
    lines += ["_cell_length_%s       %g" % (k, a) for k in "abc"]
    lines += ["_cell_angle_%s    %g" % (k, 90) for k in ("alpha", "beta", "gamma")]
    lines += ["", "_symmetry_Int_Tables_number  1", "_chemical_formula_structural  X", "_chemical_formula_sum  X",
              "_cell_volume  %s" % a ** 3, "_cell_formula_units_Z  1", "loop_", "  _symmetry_equiv_pos_site_id",
              " _symmetry_equiv_pos_as_xyz", " 1  'x, y, z'", "loop_", " _atom_site_type_symbol", " _atom_site_label",
              " _atom_site_symmetry_multiplicity", " _atom_site_fract_x", " _atom_site_fract_y", " _atom_site_fract_z",
              " _atom_site_fract_occupancy"]
    for k, (el, c) in enumerate(sorted(zip(elements, coords))):
        lines.append(" %s  %s  %s  %7.5f  %7.5f  %7.5f  %s" % (el, el + str(k + 1), 1, c[0], c[1], c[2], 1))
    return "\\n".join(lines) + "\\n"

try:
    assert os.path.isfile(os.path.join("exp", "logs", args.doc, "ckpt.pth")), "no checkpoint"
    config = yaml.safe_load(open(os.path.join("configs", args.config)))
    assert os.path.isdir(config["data"]["space_groups"]), "no operation files"
    batch = config["sampling"]["batch_size"]
    order = yaml.safe_load(open(os.path.join("sampling_orders", args.sampling_order_path)))
    queue = []
    for item in order["orders"]:
        name = "".join(el + str(c) for el, c in item["composition"].items())
        folder = os.path.join("exp", "cif_samples", args.doc, order["name"], name + "_" + str(item["space_group"][0]))
        os.makedirs(folder, exist_ok=True)
        queue += [(item, folder, i) for i in range(1, item["count"] + 1)]
    for start in range(0, len(queue), batch):
        if MODE == "hang" and order["name"] == "gencsp-1":
            while True:  # lattice_step retrying a NaN score
                pass
        if MODE == "silent" or (MODE == "crash" and order["name"] == "gencsp-1" and start == batch):
            raise AssertionError("Inconsistent lattice / symmetry operations")
        for item, folder, i in queue[start:start + batch]:
            elements = [el for el, c in item["composition"].items() for _ in range(c)]
            coords = [[0.1 * k, 0.2 * k + 0.01 * i, 0.3 * k] for k in range(len(elements))]
            with open(os.path.join(folder, "%d.cif" % i), "w") as f:
                f.write(jarvis_cif(elements, coords, 4.0 + 0.1 * args.seed))
except Exception:
    logging.error(traceback.format_exc())
sys.exit(0)
'''


def fake_upstream(tmp_path, mode="ok"):
    upstream = tmp_path / "diffusion-atoms"
    write_script(upstream / "main.py", MAIN.format(mode=mode))
    write_script(upstream / "configs" / "config.yml", "model:\n  cutoff: 5.0\ndata:\n  space_groups: ./data/space_groups\n"
                 "training:\n  batch_size: 32\n  n_epochs: 10000\n  snapshot_freq: 500\n")
    return upstream


def checkpoint(tmp_path):
    folder = tmp_path / "trained"
    write_script(folder / "ckpt.pth", "weights")
    return folder


def two_targets(batch_size=3, **options):
    return SampleRequest(task="csp", seed=5, batch_size=batch_size, targets=[perovskite_target(), rocksalt_target()],
                         options={"config": "config.yml", "T": 80, **options}, checkpoint="/ckpt/model")


def run(tmp_path, request, mode="ok"):
    env_upstream = fake_upstream(tmp_path, mode)
    (tmp_path / "sg").mkdir(exist_ok=True)
    return run_image("score_langevin", tmp_path, request, env_upstream, mounts={"/ckpt/model": checkpoint(tmp_path)},
                     env={"GENCSP_SPACE_GROUPS": str(tmp_path / "sg")})


def test_cif_tree_answers_every_sample(tmp_path):
    proc, out, report = run(tmp_path, two_targets())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report.counts() == {"accepted": 4}
    # the stand-in writes the asymmetric unit only (the real model applies the group's operations)
    assert [r["formula"] for r in report.rows] == ["SrTiO", "SrTiO", "NaCl", "NaCl"]
    config = yaml.safe_load((tmp_path / "work" / "config.yml").read_text())
    assert config["sampling"] == {"batch_size": 3} and config["model"] == {"cutoff": 5.0}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["checkpoint_sha256"]  # the mounted ckpt.pth, hashed


def test_exit_zero_with_nothing_written_fails_every_sample_with_the_logged_error(tmp_path):
    proc, out, report = run(tmp_path, two_targets(), mode="silent")
    assert proc.returncode == 1  # the adapter does not trust the upstream's exit status 0
    assert report.manifest.complete and report.counts() == {"rejected: model_failed": 4}
    assert all("Inconsistent lattice" in r["message"] for r in report.rows)


def test_a_crashed_batch_fails_alone_and_the_rest_is_sampled_by_a_second_run(tmp_path):
    proc, out, report = run(tmp_path, two_targets(batch_size=1), mode="crash")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = {(r["target_id"], r["sample_index"]): r["status"] for r in report.rows}
    # batch size 1: sample 2 of the run (srtio3 #1) died with its batch; run 2 made nacl #0 and #1
    assert status == {("srtio3", 0): "accepted", ("srtio3", 1): "rejected",
                      ("nacl", 0): "accepted", ("nacl", 1): "accepted"}
    failed = next(r for r in report.rows if r["status"] == "rejected")
    assert "run 1" in failed["message"] and "Inconsistent lattice" in failed["message"]
    assert (tmp_path / "work" / "order-2.yml").is_file() and not (tmp_path / "work" / "order-3.yml").exists()


def test_a_run_that_never_ends_is_stopped_and_its_samples_fail_as_timed_out(tmp_path):
    request = two_targets(batch_size=4, step_seconds=0.01, startup_seconds=2)
    proc, out, report = run(tmp_path, request, mode="hang")
    assert proc.returncode == 1  # nothing produced at all
    assert report.counts() == {"rejected: model_failed": 4}
    assert all("run 1" in r["message"] and "timed out" in r["message"] for r in report.rows)


def test_without_a_checkpoint_an_image_lacking_the_published_one_says_what_to_pass(tmp_path):
    request = two_targets().model_copy(update={"checkpoint": None})
    proc, out, report = run(tmp_path, request)
    assert proc.returncode == 1
    assert all("--checkpoint" in r["message"] and "mirror" in r["message"] for r in report.rows)


def test_targets_in_space_groups_up_to_15_are_recorded_unsupported(home, tmp_path):
    from orchestrator import models, runs
    from orchestrator.plan import build

    config = runs.RunConfig(model="score_langevin", dataset="carbon_24", split="val", task="csp", limit=12)
    run = build(tmp_path / "run", config, models.get("score_langevin"))
    truth = run.truth().set_index("target_id")["space_group"]
    unsupported = {u["target_id"]: u["reason"] for u in run.unsupported()}
    assert unsupported and all(truth[t] <= 15 for t in unsupported)  # carbon_24 has many monoclinic ones
    assert all(f"space group {truth[t]} is not among" in why for t, why in unsupported.items())
    served = {t["id"] for shard in run.shards() for t in shard.request().model_dump()["targets"]}
    assert served == {t for t in truth.index if truth[t] > 15} and served
