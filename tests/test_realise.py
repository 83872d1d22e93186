"""The shared Wyckoff realisation stage on real Wyckoff descriptions (perov_5 and mini truths)."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pytest

from orchestrator import datasets, models, runs
from orchestrator.atomic import write_parquet
from orchestrator.collect import RUN_TABLE
from orchestrator.plan import truth_frame
from orchestrator.realise import (
    RealisationSettings,
    RealisationTimeout,
    RealiseError,
    atom_count,
    deadline,
    realise_one,
    realise_run,
)
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
    assert info["settings"]["trials"] == 3
    assert info["counts"] == {"realised": 4, "failed": 1, "reasons": {"realisation_failed": 1}}


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


# What a WyckoffDiff model trained for one epoch sampled: ~27,000 orbits on the free positions of Pmmm.
HUGE = {"space_group": 47, "sites": [{"element": el, "letter": letter}
                                     for el in ("O", "Mg", "Si", "Fe", "Ca", "Na", "K", "Al", "Ti", "Zn")
                                     for letter in "abcdefghijklmnopqrstuvwxyzA" for _ in range(100)]}


def test_a_huge_description_is_rejected_at_once_under_the_cards_limit(home, tmp_path):
    """Before: PyXtal was asked to place ~27,000 orbits and the stage never came back."""
    run, _ = wyckoff_run(tmp_path, [datasets.load("perov_5", "test").iloc[[4, 7]]])
    table = pd.read_parquet(run.path / RUN_TABLE)
    table.loc[0, "wyckoff"] = json.dumps(HUGE)
    write_parquet(run.path / RUN_TABLE, table)
    limit = models.get("wyckoff_diffusion").limits.max_atoms
    assert limit is not None and limit < atom_count(HUGE)[1]
    start = time.monotonic()
    frame = realise_run(run, RealisationSettings(trials=2))
    assert time.monotonic() - start < 30
    huge = frame.iloc[0]
    assert huge["status"] == "rejected" and huge["reason"] == "too_many_atoms" and huge["realised"] == False  # noqa: E712
    assert f"the limit of {limit} (model card limits.max_atoms)" in huge["message"]
    assert "27000 orbits" in huge["message"] and huge["realisation_seconds"] < 5
    assert frame.iloc[1]["realised"] == True  # noqa: E712 - the other sample is realised
    info = run.info["realisation"]
    assert info["settings"]["max_atoms"] == limit and info["counts"]["reasons"] == {"too_many_atoms": 1}


def test_the_size_counts_multiplicities_in_the_primitive_cell():
    rocksalt = {"space_group": 225, "sites": [{"element": "Na", "letter": "a"}, {"element": "Cl", "letter": "b"}]}
    assert atom_count(rocksalt) == (8, 2)  # F: 4 lattice points
    assert atom_count({"space_group": 221, "sites": [{"element": "O", "letter": "d"}]}) == (3, 3)
    with pytest.raises(ValueError, match="more than the limit of 1 ") as info:
        realise_one(rocksalt, RealisationSettings(max_atoms=1), "t", 0)
    assert info.value.reason == "too_many_atoms"


def test_a_slow_placement_stops_at_the_time_limit(home):
    """200 atoms in P1 take PyXtal several seconds: the sample's limit stops it with reason `timeout`."""
    slow = {"space_group": 1, "sites": [{"element": el, "letter": "a"} for el in ("Mg", "O") for _ in range(100)]}
    start = time.monotonic()
    with pytest.raises(ValueError, match="realisation took more than 0.3 s") as info:
        realise_one(slow, RealisationSettings(seconds=0.3, max_atoms=500), "t", 0)
    assert info.value.reason == "timeout" and time.monotonic() - start < 5


def test_the_deadline_survives_a_bare_except():
    """PyXtal wraps attempts in bare `except:`: the alarm repeats, so the first one outside them stops it."""
    start = time.monotonic()
    with pytest.raises(RealisationTimeout), deadline(0.2):
        for _ in range(40):
            try:
                time.sleep(0.02)
            except:  # noqa: E722 - what PyXtal does in places
                pass
        time.sleep(10)
    assert time.monotonic() - start < 3
