"""CI's upstream model end to end: WyckoffDiff's CPU image built from the mirror (when missing), trained tiny on
perov_5 val through its own `main.py`, sampled, realised, validated, scored and reported by `gencsp e2e`.

The recipe is smaller than the card's (`make e2e MODEL=wyckoff_diffusion`): 90 training rows, 20 epochs of 3
steps, 50 diffusion steps, a 64-wide network, 8 samples. Its numbers mean nothing but that every stage ran on real upstream code;
the row says "trained here, smoke scale". Measured figures: containers/wyckoff_diffusion/README.md.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from conftest import SHARED, module_home, need
from schemas.model_card import E2E, E2EBench, E2ETrain

pytestmark = pytest.mark.docker

MODEL = "wyckoff_diffusion"
CI_PLAN = E2E(
    dataset="perov_5",
    train=E2ETrain(split="val", limit=100, epochs=20, timeout_minutes=20,
                   options={"t_max": 50, "hidden_dim": 64, "lr": 0.001, "train_batch_size": 32}),
    # no CHGNet features of the 3785 reference crystals: ~9 of this test's 14 minutes, and `make e2e` has them
    bench=[E2EBench(task="generate", limit=20, num_samples=8, options={"sample_batch_size": 8}, chgnet=False)],
)


@pytest.fixture(scope="module")
def e2e(docker_client, tmp_path_factory):
    from orchestrator.e2e import run_e2e

    mirror = SHARED / "upstream"
    need(mirror.is_dir(), f"no upstream mirror at {mirror}")
    with module_home(tmp_path_factory, "e2e-wyckoff") as (root, _):
        start = time.monotonic()
        result = run_e2e(MODEL, runtime="docker", mirror=mirror, run_dir=root / "runs", train_dir=root / "trains",
                         plan=CI_PLAN)
        yield result, root, time.monotonic() - start


def test_every_stage_ran_and_was_timed(e2e):
    result, root, seconds = e2e
    stages = {s["stage"]: s for s in result.stages}
    assert {"build", "train", "bench generate", "report"} <= set(stages)
    assert stages["train"]["rows"] == 90 and stages["train"]["epochs"] == 20  # 100 rows minus 10 held out
    assert stages["bench generate"]["samples"] == 8
    facts = json.loads((root / "runs" / f"e2e-{MODEL}" / "e2e.json").read_text())
    assert [s["stage"] for s in facts["stages"]] == [s["stage"] for s in result.stages]
    print(f"\ne2e {MODEL} in {seconds:.0f} s:", {s["stage"]: s["seconds"] for s in result.stages})


def test_samples_are_wyckoff_descriptions_drawn_from_the_training_prior(e2e):
    """Every sampled space group has mass in the prior counted on the training rows (perovskite groups),
    never MP-20's hard-coded one, which the adapter used to draw from."""
    result, _, _ = e2e
    checkpoint = result_checkpoint(result)
    prior = json.loads((checkpoint / "prior.json").read_text())
    support = {g for g, p in enumerate(prior["spg_distr"]) if p}
    labels = pd.read_csv(checkpoint.parent.parent / "work" / "wyckoffdiff" / "data" / "gencsp_perov_5" / "raw" /
                         "gencsp_perov_5_train.csv")["wyckoff_spglib"]
    assert support == {int(label.split("_")[2]) for label in labels}
    assert prior["structures"] == len(labels) == 90 and prior["spg_distr"][225] == 0  # MP-20: ~5 % Fm-3m
    frame = pd.read_parquet(run_path(result) / "structures.parquet")
    assert len(frame) == 8
    described = frame[frame["wyckoff"].notna()]
    assert len(described) >= 1
    assert {json.loads(w)["space_group"] for w in described["wyckoff"]} <= support
    failed = frame[frame["status"] == "rejected"]
    assert failed["reason"].notna().all() and failed["message"].notna().all()


def test_realised_validated_and_scored_with_an_honest_row(e2e):
    from orchestrator.leaderboard import load_entries

    result, root, _ = e2e
    run = run_path(result)
    info = json.loads((run / "run.json").read_text())
    assert info["realisation"]["settings"]["max_atoms"] == 100  # the card's limit
    counts = info["realisation"]["counts"]
    assert counts["realised"] + counts["failed"] == len(pd.read_parquet(run / "structures.parquet").query(
        "wyckoff == wyckoff"))
    assert info["weights"]["kind"] == "trained here" and info["weights"]["scale"] == "smoke"
    summary = json.loads((run / "metrics" / "summary.json").read_text())
    assert "fd_crystalnn" in summary and "fd_chgnet" not in summary  # the plan's chgnet=False reached the bench
    entries = load_entries([str(run)])
    assert len(entries) == 1 and entries[0].identity()["weights"] == "trained here, smoke scale"
    assert "trained here at smoke scale on perov_5 val split" in entries[0].weights_note()
    assert (root / "runs" / f"e2e-{MODEL}" / "report.html").is_file()


def run_path(result):
    from pathlib import Path

    assert len(result.runs) == 1
    return Path(result.runs[0])


def result_checkpoint(result):
    from pathlib import Path

    return Path(result.checkpoint)
