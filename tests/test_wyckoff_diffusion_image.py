"""The wyckoff_diffusion adapter's upstream calls against the real upstream code, inside the CPU image built from
the mirror's tarballs (WyckoffDiff at its pin, aviary v1.1.1): the command lines it passes, the labeller it
trains on, the training set's prior counted by the upstream dataset code, and the torch-load setting the image
needs. Builds the image when missing (from ../shared/upstream; ~7 min cold on 2 busy cores, seconds warm).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import SHARED, need

pytestmark = pytest.mark.docker

MODEL = "wyckoff_diffusion"
MIRROR = SHARED / "upstream"


@pytest.fixture(scope="module")
def image(docker_client, tmp_path_factory):
    """gencsp/wyckoff_diffusion:cpu from the mirror, rebuilt so that it holds this checkout's adapter."""
    from orchestrator import images, models

    need(MIRROR.is_dir(), f"no upstream mirror at {MIRROR}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENCSP_HOME", str(tmp_path_factory.mktemp("home")))
        images.build(MODEL, variant="cpu", upstream_mirror=MIRROR)
    return models.get(MODEL).with_variant("cpu")


def in_image(client, card, script: str, mounts=(), environment=None) -> dict:
    """Run a Python script in the image, confined as a shard is; it prints one JSON object last."""
    from orchestrator.runtimes.docker import container_settings

    settings = container_settings(card, ["-c", textwrap.dedent(script)], list(mounts), gpu=False)
    settings.update(entrypoint=["/opt/venv/bin/python", "-W", "ignore"], stderr=True)
    settings["environment"] = {**settings["environment"], **(environment or {})}
    output = client.containers.run(remove=True, **settings).decode()
    return json.loads(output.strip().splitlines()[-1])


def test_the_image_records_both_upstream_pins(docker_client, image):
    labels = docker_client.images.get(image.image_name).labels
    assert labels["gencsp.upstream.commit"] == image.upstream.commit
    assert labels["gencsp.upstream.source"].startswith("mirror ")
    assert "CompRhys/aviary@181e2b2b2d679a12f6dbb430853d92508e8d71f2 sha256:" in labels["gencsp.upstream.also"]


def test_the_adapters_command_lines_parse_with_upstream_main(docker_client, image):
    """Before: `--num_workers 0` (an unmerged branch's flag): main.py exited with status 2."""
    result = in_image(docker_client, image, """
        import json, adapter
        from wyckoff_generation.common.args_and_config import get_parser
        parser = get_parser()
        request = {"dataset": "perov_5", "device": "cpu", "max_epochs": 1,
                   "options": {"t_max": 10, "train_batch_size": 8, "hidden_dim": 32, "num_gnn_layers": 2}}
        commands = [adapter.train_argv(request, "gencsp_perov_5", "p.json"),
                    adapter.main_py("p.json", "generate", "--num_samples", 2, "--load",
                                    "/w/checkpoints/x/parameters.pt", "--seed", 1, "--disable_cuda"),
                    adapter.main_py("p.json", "post_process", "--enrich_data", "--save_protostructures", "--load",
                                    "/w/checkpoints/x")]
        parsed = [vars(parser.parse_args(argv[3:])) for argv in commands]
        print(json.dumps([{k: p[k] for k in ("mode", "dataset", "t_max", "batch_size", "epochs")} for p in parsed]))
    """)
    assert result[0] == {"mode": "train_d3pm", "dataset": "gencsp_perov_5", "t_max": 10, "batch_size": 8, "epochs": 1}
    assert [r["mode"] for r in result[1:]] == ["generate", "post_process"]


def test_labelling_errors_never_become_labels(docker_client, image):
    """aviary (v1.1.1, in the image) returns its errors as labels unless told to raise: '' where spglib gives
    up, and a label with two atoms on one 0-DoF position for overlapping atoms."""
    result = in_image(docker_client, image, """
        import json, adapter
        from aviary.wren.utils import get_protostructure_label_from_spglib as aviary_label
        from pymatgen.core import Lattice, Structure
        cases = {
            "perovskite": Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"],
                                                    [[0, 0, 0], [.5, .5, .5], [.5, .5, 0]]),
            "overlapping": Structure(Lattice.cubic(3), ["Na", "Cl"], [[0, 0, 0], [0, 0, 1e-4]]),
            "flat": Structure(Lattice([[1, 0, 0], [0, 1, 0], [0, 0, 1e-9]]), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        }
        out = {}
        for name, structure in cases.items():
            try:
                label = adapter.protostructure_label(structure)
            except ValueError as exc:
                label = "ValueError: " + str(exc)
            out[name] = {"aviary": aviary_label(structure), "adapter": label}
        print(json.dumps(out))
    """)
    assert result["perovskite"]["adapter"] == result["perovskite"]["aviary"] == "A3BC_cP5_221_c_a_b:O-Sr-Ti"
    assert result["overlapping"]["aviary"] == "AB_cP2_221_a_a:Cl-Na"  # what used to be written
    assert result["overlapping"]["adapter"].startswith("ValueError:") and "0-DoF position(s) a" in \
        result["overlapping"]["adapter"]
    assert result["flat"]["aviary"] == "" and result["flat"]["adapter"].startswith("ValueError:")


COUNT = """
    import glob, json, os, subprocess, sys, torch
    import adapter
    os.chdir("/work")
    name = "gencsp_perov_5"
    kept, skipped = adapter.convert_split("/data/perov_5/val.csv", "data/%s/raw/%s_train.csv" % (name, name),
                                          adapter.protostructure_label)
    code = subprocess.call([sys.executable, adapter.LAUNCHER, "--count", "prior.json", name, "100"])
    prior = json.load(open("prior.json")) if code == 0 else None
    labels = open("data/%s/raw/%s_train.csv" % (name, name)).read().splitlines()[1:]
    print(json.dumps({"code": code, "kept": kept, "prior": prior,
                      "groups": [int(line.split(",")[1].split("_")[2]) for line in labels]}))
"""


@pytest.fixture(scope="module")
def perov_rows(tmp_path_factory):
    import pandas as pd

    source = SHARED / "datasets" / "perov_5" / "val.csv"
    need(source.is_file(), f"no {source}")
    path = tmp_path_factory.mktemp("perov") / "val.csv"
    pd.read_csv(source).head(40).to_csv(path, index=False)
    return path


def test_the_prior_is_the_training_splits_own(docker_client, image, perov_rows, tmp_path):
    """Before: perov_5 trained as `mp20`, and sampling drew MP-20's space groups. The upstream dataset code
    (in the image) processes the labelled split; the prior is its space-group histogram."""
    from orchestrator.runtimes.base import Mount

    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    result = in_image(docker_client, image, COUNT, [Mount(work, "/work", False),
                                                    Mount(perov_rows, "/data/perov_5/val.csv")])
    assert result["code"] == 0 and result["kept"] == 40
    groups = result["groups"]
    spg = result["prior"]["spg_distr"]
    assert len(spg) == 231 and abs(sum(spg) - 1) < 1e-9
    assert {g for g, p in enumerate(spg) if p} == set(groups) <= {25, 47, 99, 123, 221}
    assert all(abs(spg[g] - groups.count(g) / len(groups)) < 1e-9 for g in set(groups))
    assert spg[225] == 0  # Fm-3m: about 5 % of MP-20's prior, absent from perovskites
    assert result["prior"]["structures"] == 40 and len(result["prior"]["zero_dof_distr"]) == 119


def test_torch_still_needs_the_weights_only_override(docker_client, image, perov_rows, tmp_path):
    """torch 2.13 loads weights only by default; PyG 2.5.3's InMemoryDataset and the upstream checkpoint
    loader do not say weights_only=False. The image sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: without it, the
    training set cannot be loaded. When this fails, the variable can go."""
    from orchestrator.runtimes.base import Mount

    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    mounts = [Mount(work, "/work", False), Mount(perov_rows, "/data/perov_5/val.csv")]
    without = in_image(docker_client, image, COUNT, mounts, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "0"})
    assert without["code"] != 0
