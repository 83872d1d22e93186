"""The shared Wyckoff realisation stage on real Wyckoff descriptions (perov_5 and mini truths)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from orchestrator import datasets, models, runs
from orchestrator.atomic import write_parquet
from orchestrator.collect import RUN_TABLE
from orchestrator.plan import truth_frame
from orchestrator.realise import RealisationSettings, RealiseError, realise_run
from orchestrator.structures import parse_cif
from orchestrator.targets import csp_targets
from orchestrator.validate import COLUMNS
from schemas import Task

# Na on the 0-DoF position 1a twice: no placement exists.
IMPOSSIBLE = {"space_group": 221, "sites": [{"element": "Na", "letter": "a"}, {"element": "Na", "letter": "a"}]}


def wyckoff_run(tmp_path, frames):
    """A run whose table holds the truths' Wyckoff descriptions as accepted symmetry-only samples."""
    frame = pd.concat(frames, ignore_index=True)
    targets, truths = csp_targets(frame, oracle=("space_group", "wyckoff"))
    config = runs.RunConfig(model="wyckoff_diffusion", dataset="perov_5", split="test", task=Task.csp)
    run = runs.create(tmp_path / "run", config, models.get("wyckoff_diffusion"), targets, {},
                      truth_frame(frame, truths))
    rows = []
    for k, (target, truth) in enumerate(zip(targets, truths, strict=True)):
        row = dict.fromkeys(("shard", *COLUMNS))
        description = {"space_group": truth.space_group, "sites": [s.model_dump() for s in truth.wyckoff]}
        row.update(shard=0, target_id=target.id, sample_index=0, status="accepted", model_status="ok",
                   seconds=0.1, wyckoff=json.dumps(description if k else IMPOSSIBLE))
        rows.append(row)
    failed = dict(rows[-1], sample_index=1, status="rejected", reason="model_failed", message="boom", wyckoff=None)
    write_parquet(run.path / RUN_TABLE, pd.DataFrame(rows + [failed]))
    return run, {truth.target_id: truth for truth in truths}


@pytest.fixture
def run(home, tmp_path):
    perov = datasets.load("perov_5", "test").iloc[[1, 4, 7]]  # space groups 123, 221, 221
    mini = datasets.load("mini", "test").head(2)
    return wyckoff_run(tmp_path, [perov, mini])


def test_wyckoff_rows_get_coordinates_and_failures_a_reason(run):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    run, truths = run
    frame = realise_run(run, RealisationSettings(trials=3, seed=1))
    rows = {(r.target_id, r.sample_index): r for r in frame.itertuples()}
    first = frame.iloc[0]
    assert first["status"] == "rejected" and first["reason"] == "realisation_failed"
    assert "no placement in 3 trials" in first["message"]
    untouched = frame[frame["reason"] == "model_failed"]
    assert len(untouched) == 1 and untouched["cif"].isna().all()
    realised = frame[frame["realised"].eq(True)]
    assert len(realised) == 4 and realised["cif"].notna().all() and realised["wyckoff"].notna().all()
    assert realised["composition_match"].all() and realised["num_atoms_match"].all()
    matcher = StructureMatcher()
    cubic = [r for r in realised.itertuples() if truths[r.target_id].space_group == 221]
    for row in cubic:  # cubic perovskites have no free parameter but the scale: the placement is the truth
        truth = run.truth().set_index("target_id").loc[row.target_id, "cif"]
        assert matcher.fit(parse_cif(row.cif), parse_cif(truth))
    assert len(cubic) >= 2 and rows
    info = run.info["realisation"]
    assert info["settings"]["trials"] == 3 and info["counts"] == {"realised": 4, "failed": 1}


def test_a_second_run_changes_nothing_and_other_settings_need_force(run):
    run, _ = run
    first = realise_run(run, RealisationSettings(trials=3, seed=1))
    again = realise_run(run, RealisationSettings(trials=3, seed=1))
    pd.testing.assert_frame_equal(first.drop(columns="realisation_seconds"), again.drop(columns="realisation_seconds"),
                                  check_dtype=False)
    with pytest.raises(RealiseError, match="realised before"):
        realise_run(run, RealisationSettings(trials=4))
    redone = realise_run(run, RealisationSettings(trials=4, seed=2), force=True)
    assert redone["realised"].eq(True).sum() == 4 and run.info["realisation"]["settings"]["seed"] == 2


def test_relaxation_keeps_the_lowest_energy_placement(home, tmp_path):
    perov = datasets.load("perov_5", "test").iloc[[0, 1]]
    run, _ = wyckoff_run(tmp_path, [perov])
    frame = realise_run(run, RealisationSettings(trials=2, relax=True, relax_steps=5))
    row = frame[frame["realised"].eq(True)].iloc[0]
    assert math.isfinite(row["realisation_energy"]) and row["realisation_trials"] == 2


def test_a_run_without_a_table_is_a_clear_error(home, tmp_path):
    config = runs.RunConfig(model="wyckoff_diffusion", dataset="mini", split="test", task=Task.generate)
    run = runs.create(tmp_path / "empty", config, models.get("wyckoff_diffusion"), [], {})
    with pytest.raises(RealiseError, match="no run table"):
        realise_run(run)
