"""CSP matching: a perturbed copy matches, another composition does not (and is never sent to the
matcher), and the reference scripts' rules over k samples, by hand."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from conftest import MIRROR
from orchestrator.metrics import matching
from orchestrator.metrics.context import Settings
from orchestrator.metrics.evaluate import evaluate
from orchestrator.metrics.inputs import from_files
from orchestrator.structures import cif_text


def truths(n=3):
    return pd.read_csv(MIRROR / "perov_5" / "test.csv", index_col=0).head(n)


def perturbed(cif: str, sigma=0.05, seed=0) -> str:
    structure = Structure.from_str(cif, fmt="cif")
    rng = np.random.default_rng(seed)
    for i, shift in enumerate(rng.normal(0, sigma, (len(structure), 3))):
        structure.translate_sites([i], shift, frac_coords=False)
    return cif_text(structure)


def substituted(cif: str) -> str:
    """Another composition: the first element replaced by a neighbour of the periodic table."""
    structure = Structure.from_str(cif, fmt="cif")
    first = structure[0].specie
    structure.replace_species({first: "Sr" if first.symbol != "Sr" else "Ca"})
    return cif_text(structure)


def overlapping(cif: str) -> str:
    """Same composition, two atoms 0.1 A apart: structurally invalid."""
    structure = Structure.from_str(cif, fmt="cif")
    structure.translate_sites([1], structure[0].coords - structure[1].coords + np.array([0.1, 0, 0]),
                              frac_coords=False)
    return cif_text(structure)


def test_perturbed_copy_matches_and_another_composition_does_not():
    truth = truths(1)["cif"].iloc[0]
    rms, message = matching.rms_of_pair(perturbed(truth), truth, "loose")
    assert message is None and 0 < rms < 0.1
    # the skip rule: pymatgen itself finds no match between different reduced compositions
    other = substituted(truth)
    assert StructureMatcher(**matching.TOLERANCES["loose"]).get_rms_dist(
        Structure.from_str(other, fmt="cif"), Structure.from_str(truth, fmt="cif")) is None
    assert matching.rms_of_pair(other, truth, "loose") == (None, None)
    assert matching.rms_of_pair("junk", truth, "loose")[1].startswith("StructureError")


def pairs(rows):
    """A pair table by hand: (target, sample, valid, rms)."""
    return pd.DataFrame(rows, columns=["target_id", "sample_index", "pred_valid", "rms"])


def test_rates_over_targets_by_hand():
    table = pairs([("a", 0, True, 0.2), ("a", 1, True, 0.1), ("b", 0, False, 0.05), ("b", 1, True, None),
                   ("c", 0, True, None)])
    best = matching.best_per_target(table, "rms")
    assert best.to_dict() == {"a": 0.1}  # b's only match is invalid, c has none
    assert matching.match_summary(best, 4) == {"match_rate": 0.25, "rms_dist": 0.1}  # d was never predicted
    assert matching.crmse(best, 4, 0.5) == pytest.approx((0.1 + 3 * 0.5) / 4)
    first = matching.first_samples(table)
    assert matching.match_summary(matching.best_per_target(first, "rms"), 4)["rms_dist"] == 0.2


@pytest.fixture(scope="module")
def csp_files(tmp_path_factory):
    """Three targets, two samples each: target 0 perturbed (valid) then another composition;
    target 1 overlapping atoms (invalid) then perturbed; target 2 another composition twice."""
    path = tmp_path_factory.mktemp("csp")
    frame = truths(3)
    frame[["material_id", "cif"]].to_csv(path / "reference.csv", index=False)
    ids, cifs = frame["material_id"].astype(str).tolist(), frame["cif"].tolist()
    rows = [(ids[0], 0, perturbed(cifs[0])), (ids[0], 1, substituted(cifs[0])),
            (ids[1], 0, overlapping(cifs[1])), (ids[1], 1, perturbed(cifs[1], seed=1)),
            (ids[2], 0, substituted(cifs[2])), (ids[2], 1, substituted(cifs[2]))]
    pd.DataFrame(rows, columns=["target_id", "sample_index", "cif"]).to_csv(path / "predictions.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENCSP_HOME", str(path / "home"))
        yield path


def csp(csp_files, profile):
    inputs = from_files(csp_files / "predictions.csv", "csp", str(csp_files / "reference.csv"), "perovskite")
    return evaluate(inputs, profile, Settings(workers=1, progress=False, chgnet=False))


def test_reference_profiles_on_k_samples(csp_files):
    cdvae = csp(csp_files, "cdvae")
    assert set(cdvae.metrics) == {"match_rate", "rms_dist"}
    # first samples only: target 0 matches, target 1's first sample is invalid, target 2 another composition
    assert cdvae.metrics["match_rate"] == pytest.approx(1 / 3)
    # DiffCSP's batch rule: best valid sample of each target
    assert csp(csp_files, "diffcsp").metrics["match_rate"] == pytest.approx(2 / 3)


def test_gencsp_profile_names_both_and_the_corrected_numbers(csp_files):
    result = csp(csp_files, "gencsp")
    m = result.metrics
    assert m["cdvae.match_rate"] == pytest.approx(1 / 3) and m["diffcsp.match_rate"] == pytest.approx(2 / 3)
    assert m["match_rate@1"] == pytest.approx(1 / 3) and m["match_rate@2"] == pytest.approx(2 / 3)
    assert m["crmse@2"] == pytest.approx((2 * m["rms_dist@2"] + 0.5) / 3)
    assert m["strict.match_rate@2"] <= m["match_rate@2"]
    assert m["valid"] == pytest.approx(5 / 6)
    table = result.table
    assert len(table) == 6 and table["rms_loose"].notna().sum() == 2  # the four other pairs cannot match
    assert table["matched"].tolist() == [True, False, False, True, False, False]


def test_diffcsp_one_sample_needs_a_valid_truth(tmp_path, monkeypatch):
    """A valid prediction of a structurally invalid truth matches for CDVAE, not for DiffCSP."""
    monkeypatch.setenv("GENCSP_HOME", str(tmp_path / "home"))
    truth_cif = truths(1)["cif"].iloc[0]
    truth, prediction = (Structure.from_str(overlapping(truth_cif), fmt="cif") for _ in range(2))
    prediction.translate_sites([1], [0.35, 0, 0], frac_coords=False)  # 0.1 A -> 0.45 A: still too close
    prediction.translate_sites([1], [0.2, 0, 0], frac_coords=False)  # 0.65 A: valid
    pd.DataFrame({"material_id": ["t"], "cif": [cif_text(truth)]}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"target_id": ["t"], "cif": [cif_text(prediction)]}).to_csv(tmp_path / "pred.csv", index=False)
    inputs = from_files(tmp_path / "pred.csv", "csp", str(tmp_path / "ref.csv"), "perovskite")
    result = evaluate(inputs, "gencsp", Settings(workers=1, progress=False, chgnet=False))
    assert result.metrics["cdvae.match_rate"] == 1.0 and result.metrics["diffcsp.match_rate"] == 0.0
