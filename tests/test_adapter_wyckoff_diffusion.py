"""wyckoff_diffusion adapter: WyckoffDiff's saved PyG `Data`, its command line (the real argparse parser of the
mirror's tarball), and the sampling path against a stand-in main.py that writes the upstream's files.

The real upstream code runs inside the image in tests/test_wyckoff_diffusion_image.py."""

from __future__ import annotations

import json
import sys
import tarfile

import pytest
import torch
from test_adapter_common import load_adapter, run_image, write_script
from torch_geometric.data import Data

from conftest import ROOT, SHARED
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


# --- the upstream command line: the real parser of the mirror's tarball --------------------------

UPSTREAM_TARBALL = SHARED / "upstream" / "httk" / "wyckoffdiff" / "archive" / f"{wd.COMMIT}.tar.gz"


@pytest.fixture(scope="module")
def upstream_parser(tmp_path_factory):
    """WyckoffDiff's own argparse parser (args_and_config.get_parser: imports torch only)."""
    if not UPSTREAM_TARBALL.is_file():
        pytest.skip(f"no upstream mirror at {UPSTREAM_TARBALL}")
    folder = tmp_path_factory.mktemp("wyckoffdiff")
    with tarfile.open(UPSTREAM_TARBALL) as tar:
        tar.extractall(folder, filter="data")
    sys.path.insert(0, str(folder / f"wyckoffdiff-{wd.COMMIT}"))
    try:
        from wyckoff_generation.common.args_and_config import get_parser
    finally:
        sys.path.pop(0)
    return get_parser()


def upstream_args(argv):
    """The main.py arguments of an adapter command (after the launcher and its prior)."""
    assert argv[1] == wd.LAUNCHER
    return argv[3:]


def test_training_passes_only_flags_upstream_main_knows(upstream_parser):
    """Before: `--num_workers 0`, a flag of an unmerged branch: main.py exited with status 2."""
    request = {"dataset": "perov_5", "seed": 3, "device": "cpu", "max_epochs": 2,
               "options": {"d3pm_transition": "marginal", "t_max": 50, "train_batch_size": 16, "lr": 1e-3}}
    args = upstream_parser.parse_args(upstream_args(wd.train_argv(request, "gencsp_perov_5", "/m/prior.json")))
    assert (args.mode, args.dataset, args.d3pm_transition, args.logger) == (
        "train_d3pm", "gencsp_perov_5", "marginal", "model_only")
    assert (args.t_max, args.batch_size, args.epochs, args.seed, args.lr, args.disable_cuda) == (
        50, 16, 2, 3, 1e-3, True)


def test_sampling_passes_only_flags_upstream_main_knows(upstream_parser):
    args = upstream_parser.parse_args(upstream_args(wd.main_py(
        "p.json", "generate", "--num_samples", 3, "--load", "/w/checkpoints/gencsp-0000/parameters.pt",
        "--seed", 7, *wd.device_flags("cpu"))))
    assert (args.mode, args.num_samples, args.seed, args.disable_cuda) == ("generate", 3, 7, True)
    args = upstream_parser.parse_args(upstream_args(wd.main_py(
        None, "post_process", "--enrich_data", "--save_protostructures", "--load", "/w/checkpoints/gencsp-0000")))
    assert args.mode == "post_process" and args.enrich_data and args.save_protostructures


def test_the_old_num_workers_flag_is_refused_by_upstream(upstream_parser):
    """The parser is the upstream one: the flag the adapter used to pass ends the run (status 2)."""
    with pytest.raises(SystemExit) as info:
        upstream_parser.parse_args(["--mode", "train_d3pm", "--num_workers", "0"])
    assert info.value.code == 2


@pytest.mark.parametrize("dataset", ["perov_5", "mp_20", "carbon_24", "mini"])
def test_a_gencsp_dataset_is_never_trained_under_an_upstream_name(dataset):
    """Before: perov_5 was trained as `mp20`, so sampling drew MP-20's hard-coded space-group prior."""
    name = wd.dataset_name(dataset)
    assert name not in {"wbm", "mp20", "carbon24"} and name == name.lower()
    argv = wd.train_argv({"dataset": dataset, "options": {}}, name, "/m/prior.json")
    assert argv[2] == "/m/prior.json" and argv[argv.index("--dataset") + 1] == name


# --- labelling the training splits ------------------------------------------------------------


def test_labelling_errors_are_skipped_and_counted_never_written(tmp_path, home):
    """Before: aviary's labeller returned its error message (or '') as the label, and it was written."""
    import pandas as pd

    from orchestrator import datasets

    source = datasets.fetch("mini", "test", progress=False)
    frame = pd.read_csv(source)
    bad = set(frame["material_id"].iloc[:2])

    calls = iter(range(len(frame)))

    def flaky(structure):
        k = next(calls)
        if frame["material_id"].iloc[k] in bad:
            raise ValueError("Invalid WP multiplicities - AB_cP2_221_a_a:Cl-Na, expected ClNa2 to be NaCl")
        return structure.composition.reduced_formula

    target = tmp_path / "raw" / "x_train.csv"
    kept, skipped = wd.convert_split(str(source), str(target), flaky, prop="formation_energy_per_atom")
    written = pd.read_csv(target)
    assert kept == len(written) == len(frame) - 2 and skipped == {"ValueError": 2}
    assert not written["wyckoff_spglib"].str.contains("Invalid").any()
    assert not set(written["material_id"]) & bad
    assert list(written.columns) == ["material_id", "wyckoff_spglib", "formation_energy_per_atom"]


# --- main.py replaced by a stand-in writing WyckoffDiff's files --------------------------------

REGISTRY = """
class Registry:
    mapping = {"dataset_name_mapping": {}, "datainfo_name_mapping": {}}
    def register_dataset(self, name):
        def wrap(cls):
            self.mapping["dataset_name_mapping"][name] = cls
            return cls
        return wrap
    def register_datainfo(self, name):
        def wrap(cls):
            self.mapping["datainfo_name_mapping"][name] = cls
            return cls
        return wrap
registry = Registry()
"""

MAIN = """
import argparse, os, sys, torch
sys.path.insert(0, {tests!r})
from test_adapter_wyckoff_diffusion import generated
from wyckoff_generation.common.registry import registry
parser = argparse.ArgumentParser()
parser.add_argument('--mode'); parser.add_argument('--load'); parser.add_argument('--num_samples', type=int)
parser.add_argument('--seed', type=int, default=42)
for flag in ('--enrich_data', '--save_protostructures', '--disable_cuda'):
    parser.add_argument(flag, action='store_true')
args = parser.parse_args()
MODE = {mode!r}
UNLABELLED = {unlabelled!r}  # the chunk seed whose sample 1 post-processing cannot label
assert 'checkpoints' in args.load.split('/')
if args.mode == 'generate':
    # as upstream: the model (and its prior) is the checkpoint's config
    dataset = torch.load(args.load, weights_only=False)['config']['dataset']
    info = registry.mapping['datainfo_name_mapping'][dataset]
    assert info.spg_distr[221] == 1.0, 'the prior of the training split is registered'
    if MODE == 'crash':
        sys.exit('RuntimeError: out of memory')
    n = args.num_samples - (1 if MODE == 'short' else 0)
    samples = [generated(221, {{'a': 38, 'b': 22, 'c': 8}}, {{}}) if k % 2 == 0 else
               generated(62, {{}}, {{'c': {{12: 1, 8: 1}}}}) for k in range(n)]
    folder = os.path.dirname(args.load)
    print('chunk', args.num_samples, args.seed)
    torch.save(samples, os.path.join(folder, 'generated_samples_N=%d_seed=%d.pt' % (args.num_samples, args.seed)))
else:
    out = os.path.join(args.load, 'post_processed')
    os.makedirs(out)
    for name in os.listdir(args.load):
        if name.startswith('generated_samples'):
            samples = torch.load(os.path.join(args.load, name), weights_only=False)
            for k, data in enumerate(samples):
                if not (k == 1 and '_seed=%d.' % UNLABELLED in name):  # upstream leaves those unlabelled
                    data.aflow_label = 'ABC3_cP5_221_a_b_c:O-Sr-Ti'
            torch.save(samples, os.path.join(out, name))
"""


def fake_upstream(tmp_path, mode="ok", unlabelled=-1):
    upstream = tmp_path / "wyckoffdiff"
    write_script(upstream / "main.py", MAIN.format(tests=str(ROOT / "tests"), mode=mode, unlabelled=unlabelled))
    write_script(upstream / "wyckoff_generation" / "common" / "registry.py", REGISTRY)
    write_script(upstream / "wyckoff_generation" / "datasets" / "dataset.py", "class WyckoffDataset:\n    pass\n")
    for package in ("", "common", "datasets"):
        write_script(upstream / "wyckoff_generation" / package / "__init__.py", "")
    return upstream


def trained_checkpoint(tmp_path):
    """out/model of a training: the upstream run folder, the prior of the training split, gencsp_train.json."""
    folder = tmp_path / "trained" / "model"
    run = folder / "checkpoints" / "07-05-2026-run"
    run.mkdir(parents=True)
    torch.save({"config": {"dataset": "gencsp_perov_5"}}, run / "parameters.pt")
    prior = {"name": "gencsp_perov_5", "spg_distr": [0.0] * 221 + [1.0] + [0.0] * 9,
             "zero_dof_distr": [1.0] + [0.0] * 118, "inf_dof_distr": [1.0]}
    (folder / wd.PRIOR).write_text(json.dumps(prior))
    (folder / wd.TRAIN_INFO).write_text(json.dumps({"dataset": "gencsp_perov_5", "source": "perov_5"}))
    return folder


def request(**options):
    return SampleRequest(task="generate", seed=11, checkpoint="/ckpt/model", options=options,
                         targets=[Target(id="gen-00000", samples=3), Target(id="gen-00001", samples=1)])


def test_generated_data_become_wyckoff_records_in_chunks(tmp_path):
    proc, out, report = run_image("wyckoff_diffusion", tmp_path, request(sample_batch_size=3),
                                  fake_upstream(tmp_path), {"/ckpt/model": trained_checkpoint(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("chunk")] == ["3", "1"]
    rows = {(r["target_id"], r["sample_index"]): r for r in report.rows}
    assert report.counts() == {"accepted": 4}
    first = json.loads(rows["gen-00000", 0]["wyckoff"])
    assert first["space_group"] == 221 and [s["element"] for s in first["sites"]] == ["Sr", "Ti", "O"]
    assert json.loads(rows["gen-00000", 1]["wyckoff"])["space_group"] == 62
    assert all(r.seconds > 0 for r in report.manifest.samples)  # the chunk's time, shared by its samples
    assert report.manifest.model.checkpoint_sha256 is not None


def test_a_sample_upstream_could_not_label_fails(tmp_path):
    upstream = fake_upstream(tmp_path, unlabelled=wd.g.derived_seed(11, "wyckoffdiff-chunk", 0))
    proc, out, report = run_image("wyckoff_diffusion", tmp_path, request(sample_batch_size=4), upstream,
                                  {"/ckpt/model": trained_checkpoint(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {(r["target_id"], r["sample_index"]): r for r in report.rows}
    assert rows["gen-00000", 1]["reason"] == "model_failed"
    assert "post-processing found no protostructure" in rows["gen-00000", 1]["message"]
    assert report.counts() == {"accepted": 3, "rejected: model_failed": 1}


@pytest.mark.parametrize("mode, code, accepted", [("short", 0, 3), ("crash", 1, 0)])
def test_upstream_failures(tmp_path, mode, code, accepted):
    proc, out, report = run_image("wyckoff_diffusion", tmp_path, request(sample_batch_size=10),
                                  fake_upstream(tmp_path, mode), {"/ckpt/model": trained_checkpoint(tmp_path)})
    assert proc.returncode == code
    assert report.manifest.complete
    assert report.counts().get("accepted", 0) == accepted
    assert sum(report.counts().values()) == 4


def test_sampling_without_a_checkpoint_says_how_to_get_one(tmp_path):
    plain = request().model_copy(update={"checkpoint": None})
    proc, out, report = run_image("wyckoff_diffusion", tmp_path, plain, fake_upstream(tmp_path))
    assert proc.returncode == 1 and "gencsp train --model wyckoff_diffusion" in proc.stderr
