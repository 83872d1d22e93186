"""score_langevin adapter against diffusion-atoms' CIF tree (jarvis-written files, its folder layout)."""

from __future__ import annotations

import json
import types

import pytest
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


def test_targets_of_one_folder_share_an_order():
    order, layout = score.sampling_order(session_of([perovskite_target("a", 2), perovskite_target("b", 1)]))
    assert order["name"] == "gencsp" and len(order["orders"]) == 1
    assert order["orders"][0] == {"space_group": [221], "composition": {"O": 1, "Sr": 1, "Ti": 1}, "count": 3,
                                  "T": 80, "random_positions": True, "random_lattice": True, "only_final": True}
    assert layout == {"O1Sr1Ti1_221": [("a", 0), ("a", 1), ("b", 0)]}


def test_last_error_is_the_end_of_the_logged_traceback():
    log = "INFO - main.py - Using device: cpu\nERROR - main.py - Traceback (most recent call last):\n" \
          "  File \"runners/diffusion.py\", line 3\nAttributeError: 'Namespace' object has no attribute 'sampling'\n"
    assert score.last_error(log) == "AttributeError: 'Namespace' object has no attribute 'sampling'"
    assert score.last_error("INFO - fine\n") is None


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
    assert os.path.isdir("data") and os.path.isdir(os.path.join("exp", "logs", args.doc)), "run folder incomplete"
    config = yaml.safe_load(open(os.path.join("configs", args.config)))
    batch = config["sampling"]["batch_size"]
    order = yaml.safe_load(open(os.path.join("sampling_orders", args.sampling_order_path)))
    for n, item in enumerate(order["orders"]):
        if MODE == "silent" or (MODE == "partial" and n == 1):
            raise AttributeError("'Namespace' object has no attribute 'sampling'")
        name = "".join(el + str(c) for el, c in item["composition"].items())
        folder = os.path.join("exp", "cif_samples", args.doc, order["name"], name + "_" + str(item["space_group"][0]))
        os.makedirs(folder, exist_ok=True)
        elements = [el for el, c in item["composition"].items() for _ in range(c)]
        for i in range(1, item["count"] + 1):
            coords = [[0.1 * k, 0.2 * k + 0.01 * i, 0.3 * k] for k in range(len(elements))]
            with open(os.path.join(folder, "%d.cif" % i), "w") as f:
                f.write(jarvis_cif(elements, coords, 4.0 + 0.1 * batch))
except Exception:
    logging.error(traceback.format_exc())
sys.exit(0)
'''


def fake_upstream(tmp_path, mode="ok"):
    upstream = tmp_path / "diffusion-atoms"
    write_script(upstream / "main.py", MAIN.format(mode=mode))
    write_script(upstream / "configs" / "config.yml", "model:\n  cutoff: 5.0\n")
    (upstream / "data" / "space_groups").mkdir(parents=True)
    (upstream / "exp" / "logs" / "pretrained").mkdir(parents=True)
    return upstream


def two_orders(batch_size=3):
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    group, sites = truth_symmetry(nacl)
    rocksalt = Target(id="nacl", composition={"Na": 4, "Cl": 4}, samples=2,
                      conditioning=Conditioning(space_group=group, wyckoff=list(sites)))
    return SampleRequest(task="csp", seed=5, batch_size=batch_size, targets=[perovskite_target(), rocksalt],
                         options={"config": "config.yml", "T": 80})


def test_cif_tree_answers_every_sample(tmp_path):
    proc, out, report = run_image("score_langevin", tmp_path, two_orders(), fake_upstream(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report.counts() == {"accepted": 4}
    # the stand-in writes the asymmetric unit only (the real model applies the group's operations)
    assert [r["formula"] for r in report.rows] == ["SrTiO", "SrTiO", "NaCl", "NaCl"]
    config = json.loads((tmp_path / "work" / "config.yml").read_text())
    assert config == {"model": {"cutoff": 5.0}, "sampling": {"batch_size": 3}}


def test_exit_zero_with_nothing_written_fails_every_sample_with_the_logged_error(tmp_path):
    proc, out, report = run_image("score_langevin", tmp_path, two_orders(), fake_upstream(tmp_path, "silent"))
    assert proc.returncode == 1  # the adapter does not trust the upstream's exit status 0
    assert report.manifest.complete and report.counts() == {"rejected: model_failed": 4}
    assert all("no attribute 'sampling'" in r["message"] for r in report.rows)


def test_partial_tree_keeps_what_was_written(tmp_path):
    proc, out, report = run_image("score_langevin", tmp_path, two_orders(), fake_upstream(tmp_path, "partial"))
    assert proc.returncode == 0
    status = {(r["target_id"], r["sample_index"]): r["status"] for r in report.rows}
    assert status == {("srtio3", 0): "accepted", ("srtio3", 1): "accepted",
                      ("nacl", 0): "rejected", ("nacl", 1): "rejected"}
