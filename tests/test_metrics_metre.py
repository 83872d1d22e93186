"""METRe, polymorph-aware and de-duplicated scoring: the reduced-once matcher gives pymatgen's numbers,
the pure functions by hand, and the gencsp profile on inputs whose answers are known."""

import math

import pandas as pd
import pytest
from pymatgen.core import Structure
from test_metrics_matching import perturbed, substituted

from conftest import MIRROR
from orchestrator.metrics import matching
from orchestrator.metrics.context import Settings
from orchestrator.metrics.evaluate import evaluate
from orchestrator.metrics.inputs import from_files
from orchestrator.metrics.metre import metre, rates, target_outcomes
from orchestrator.metrics.records import Timing
from orchestrator.metrics.reduced_matching import rms_of_pairs, rms_reduced
from orchestrator.metrics.uniqueness import _reduce
from orchestrator.structures import cif_text


@pytest.fixture(scope="module")
def structures():
    """Two polymorphs of one reduced formula that do not match each other (CDVAE tolerances), and
    single structures; d2 is d shifted (a duplicate)."""
    frame = pd.read_csv(MIRROR / "perov_5" / "test.csv", index_col=0).head(400)
    frame["reduced"] = [Structure.from_str(c, fmt="cif").composition.reduced_formula for c in frame["cif"]]
    counts = frame["reduced"].value_counts()
    for formula in counts[counts >= 2].index:
        p1, p2 = frame[frame["reduced"] == formula]["cif"].head(2)
        if matching.rms_of_pair(p1, p2, "loose")[0] is None and matching.rms_of_pair(p2, p1, "loose")[0] is None:
            break
    d, c = frame[frame["reduced"].map(counts) == 1]["cif"].head(2)
    moved = Structure.from_str(d, fmt="cif")
    moved.translate_sites(list(range(len(moved))), [0.21, 0.05, 0.33])
    return {"p1": p1, "p2": p2, "d": d, "d2": cif_text(moved), "c": c}


def test_reduced_once_matching_gives_pymatgens_numbers(structures, tmp_path):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    cases = [(perturbed(structures["p2"]), structures["p2"]), (structures["p1"], structures["p2"]),
             (structures["d2"], structures["d"]), (perturbed(structures["c"], 0.2), structures["c"])]
    for tolerance in ("loose", "strict"):
        matcher = StructureMatcher(**matching.TOLERANCES[tolerance])
        for pred, truth in cases:
            assert rms_reduced(matcher, _reduce(pred), _reduce(truth)) == matching.rms_of_pair(pred, truth, tolerance)[0]

    class NoCache:
        def pairs(self, keys):
            return {}

        put_pairs = close = lambda self, *a: None

    pairs = [("x", "junk", "d", structures["d"], 0), ("y", structures["d2"], "d", structures["d"], 0)]
    found = rms_of_pairs(pairs, "loose", 1, NoCache(), False, Timing())
    assert found["x|d|loose"][0] is None and "Error" in found["x|d|loose"][1]
    assert found["y|d|loose"] == (matching.rms_of_pair(structures["d2"], structures["d"], "loose")[0], None)


def test_metre_and_polymorph_outcomes_by_hand():
    # gen rows 0-3 made for targets 0, 0, 1, 2; reference rows 0-3 (row 3 has no sample); 0 and 3 duplicates
    pairs = pd.DataFrame([(0, 0, 0.2), (1, 0, None), (1, 1, 0.1), (2, 1, 0.3), (3, 3, 0.05), (3, 2, None)],
                         columns=["gen", "ref", "rms"]).astype({"rms": float})
    assert metre(pairs, 4, 0.5) == {"metre": 0.75, "rms_dist": pytest.approx(0.35 / 3),
                                    "crmse": pytest.approx((0.2 + 0.1 + 0.05 + 0.5) / 4)}
    assert metre(pairs, 2, 0.5, refs=[0, 2]) == {"metre": 0.5, "rms_dist": 0.2, "crmse": pytest.approx(0.35)}
    owner = {0: 0, 1: 0, 2: 1, 3: 2}
    outcomes = target_outcomes(pairs, owner)
    assert outcomes["own_rms"].tolist()[:2] == [0.2, 0.3] and math.isnan(outcomes.loc[2, "own_rms"])
    assert outcomes["polymorph"].tolist() == [False, False, True]  # target 2's sample matches reference 3
    assert rates(outcomes, 4, 0.5) == {"match_rate": 0.5, "rms_dist": pytest.approx(0.25),
                                       "crmse": pytest.approx((0.5 + 1.0) / 4), "polymorph_match_rate": 0.25,
                                       "match_or_polymorph_rate": 0.75}
    # a match to a duplicate of the target is not a polymorph
    assert not target_outcomes(pairs, owner, {0: 0, 1: 1, 2: 2, 3: 2}).loc[2, "polymorph"]


def _write(path, reference: dict, predictions: list[tuple]) -> None:
    pd.DataFrame({"material_id": list(reference), "cif": list(reference.values())}).to_csv(
        path / "reference.csv", index=False)
    frame = pd.DataFrame(predictions, columns=["target_id", "sample_index", "cif"])
    frame.dropna(axis=1, how="all").to_csv(path / "predictions.csv", index=False)


def test_csp_polymorphs_and_duplicates_count_apart(structures, tmp_path, monkeypatch):
    """p1's sample is p2 (a polymorph); p2 and d are found; d2 duplicates d; c is not found."""
    monkeypatch.setenv("GENCSP_HOME", str(tmp_path / "home"))
    s = structures
    _write(tmp_path, s, [("p1", 0, perturbed(s["p2"], seed=2)), ("p2", 0, perturbed(s["p2"], seed=1)),
                         ("d", 0, perturbed(s["d"])), ("d2", 0, substituted(s["d"])), ("c", 0, substituted(s["c"]))])
    inputs = from_files(tmp_path / "predictions.csv", "csp", str(tmp_path / "reference.csv"), "perovskite")
    m = evaluate(inputs, "gencsp", Settings(workers=2, progress=False, chgnet=False)).metrics
    assert m["match_rate@1"] == pytest.approx(2 / 5)
    assert m["metre@1"] == pytest.approx(3 / 5)  # p2 (by two samples), d and its duplicate d2
    assert m["polymorph_match_rate@1"] == pytest.approx(1 / 5)
    assert m["match_or_polymorph_rate@1"] - m["polymorph_match_rate@1"] == pytest.approx(m["match_rate@1"])
    assert m["metre_crmse@1"] == pytest.approx((3 * m["metre_rms_dist@1"] + 2 * 0.5) / 5)
    assert m["dedup.duplicate_targets"] == pytest.approx(1 / 5)
    assert m["dedup.match_rate@1"] == pytest.approx(2 / 4) and m["dedup.metre@1"] == pytest.approx(2 / 4)
    assert m["dedup.polymorph_match_rate@1"] == pytest.approx(1 / 4)
    assert m["crmse@1"] == pytest.approx(m["dedup.crmse@1"] * 4 / 5 + 0.5 / 5)  # d2 is unmatched
    assert m["cdvae.match_rate"] == m["match_rate@1"]  # the reference number is unchanged beside them


def test_generation_metre_over_reference_crystals(structures, tmp_path, monkeypatch):
    monkeypatch.setenv("GENCSP_HOME", str(tmp_path / "home"))
    s = structures
    _write(tmp_path, s, [(None, 0, perturbed(s["d"])), (None, 0, perturbed(s["p1"])), (None, 0, substituted(s["c"])),
                         (None, 0, perturbed(s["p1"], seed=3))])
    inputs = from_files(tmp_path / "predictions.csv", "generate", str(tmp_path / "reference.csv"), "perovskite")
    result = evaluate(inputs, "gencsp", Settings(workers=1, progress=False, chgnet=False, subset_size=4))
    m = result.metrics
    assert m["metre"] == pytest.approx(3 / 5)  # d and its duplicate d2, p1
    assert m["dedup.duplicate_references"] == pytest.approx(1 / 5) and m["dedup.metre"] == pytest.approx(2 / 4)
    assert m["metre_crmse"] == pytest.approx((3 * m["metre_rms_dist"] + 2 * 0.5) / 5)
    described = result.provenance["metrics"]["metre"]["description"]
    assert "arXiv:2509.12178" in described and "ANY valid generated crystal" in described


def test_a_crowded_composition_gives_what_matching_every_pair_gives(tmp_path, monkeypatch):
    """Carbon: one composition, so buckets split by primitive-cell size; METRe must equal brute force."""
    monkeypatch.setenv("GENCSP_HOME", str(tmp_path / "home"))
    frame = pd.read_csv(MIRROR / "carbon_24" / "val.csv", index_col=0).head(12)
    reference = dict(zip(frame["material_id"].astype(str), frame["cif"], strict=True))
    samples = [perturbed(frame["cif"].iloc[i], 0.02, seed=i) for i in (0, 3, 7)]
    _write(tmp_path, reference, [(None, 0, cif) for cif in samples])
    inputs = from_files(tmp_path / "predictions.csv", "generate", str(tmp_path / "reference.csv"), "carbon")
    m = evaluate(inputs, "gencsp", Settings(workers=2, progress=False, chgnet=False, subset_size=3)).metrics
    found = [r for r in reference.values() if any(matching.rms_of_pair(s, r, "loose")[0] is not None for s in samples)]
    assert len(found) >= 3 and m["metre"] == pytest.approx(len(found) / 12)
