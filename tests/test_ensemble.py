"""Stability ensemble of ML potentials: checkpoint identities, the ensemble by hand, and
`gencsp relax --engine chgnet,sevennet` -> evaluate -> report on a perov_5 run."""

import importlib.util
import json
import math
import shutil

import pandas as pd
import pytest

from conftest import module_home, need
from dft import ensemble
from dft.mlip import MLIPRelaxer
from dft.potentials import WHEEL_CHECKPOINTS, LoadOptions, PotentialError, identity
from orchestrator.cli import main
from orchestrator.hashing import sha256_file

RELAX = ["--steps", "5", "--reference-split", "val", "--element-prototypes", "fcc,dimer"]


def test_ensemble_by_hand():
    samples = pd.DataFrame({"target_id": list("abcd"), "sample_index": 0})
    a = pd.DataFrame({"target_id": list("abc"), "sample_index": 0, "e_above_hull": [-0.1, 0.05, 0.3]})
    b = pd.DataFrame({"target_id": list("ab"), "sample_index": 0, "e_above_hull": [0.1, 0.05]})
    frame = ensemble.table(samples, {"a": a, "b": b})
    assert frame["e_above_hull_mean"].tolist()[:2] == pytest.approx([0.0, 0.05])
    assert frame["e_above_hull_mean"].iloc[2:].isna().all()  # one engine only, then none: no ensemble value
    assert frame["e_above_hull_std"].tolist()[:2] == pytest.approx([0.1, 0.0])
    result = ensemble.summary(frame, [{"engine": "a"}, {"engine": "b"}])
    per = {e["engine"]: e for e in result["engines"]}
    assert per["a"]["stable_rate@0.0eV"] == 0.25 and per["a"]["metastable_rate@0.1eV"] == 0.5
    assert per["b"]["stable_rate@0.0eV"] == 0.0 and per["b"]["metastable_rate@0.1eV"] == 0.5
    ens = result["ensemble"]
    assert ens["stable_rate@0.0eV"] == 0.25 and ens["metastable_rate@0.1eV"] == 0.5  # over all 4 samples
    assert ens["engine_mean.stable_rate@0.0eV"] == 0.125 and ens["engine_std.stable_rate@0.0eV"] == 0.125
    assert ens["e_above_hull_std_mean"] == pytest.approx(0.05) and ens["samples_with_value"] == 2
    assert result["thresholds_ev_per_atom"] == {"stable": 0.0, "metastable": 0.1}


def test_the_recorded_identity_is_the_checkpoint_file(tmp_path):
    default = identity("chgnet", LoadOptions())
    wheel = WHEEL_CHECKPOINTS["chgnet"]("0.3.0")
    assert default["checkpoint"] == str(wheel) and default["checkpoint_sha256"] == sha256_file(wheel)
    older = identity("chgnet", LoadOptions(model="0.2.0"))
    assert older["checkpoint_sha256"] != default["checkpoint_sha256"] and older["version"] == default["version"]
    copy = tmp_path / "chgnet.pth.tar"
    shutil.copyfile(wheel, copy)
    given = MLIPRelaxer(weights=str(copy)).identity()
    assert given["checkpoint"] == str(copy) and given["checkpoint_sha256"] == default["checkpoint_sha256"]
    with open(copy, "ab") as handle:  # another checkpoint at the same path
        handle.write(b"\0")
    assert MLIPRelaxer(weights=str(copy)).identity()["checkpoint_sha256"] == sha256_file(copy) != \
        default["checkpoint_sha256"]


def test_sevennet_checkpoints_come_from_the_wheel_never_the_network():
    need(importlib.util.find_spec("sevenn") is not None, "sevenn is not installed (pip install 'gencsp[mlip]')")
    found = identity("sevennet", LoadOptions())
    assert found["model"] == "7net-0" and found["checkpoint"].endswith("checkpoint_sevennet_0.pth")
    assert found["checkpoint_sha256"] == sha256_file(found["checkpoint"])
    assert identity("sevennet", LoadOptions(model="7net-l3i5"))["checkpoint_sha256"] != found["checkpoint_sha256"]
    with pytest.raises(PotentialError, match="not in the installed wheel"):
        WHEEL_CHECKPOINTS["sevennet"]("7net-omni")  # a GitHub download in sevenn itself: refused


def test_an_extrapolated_energy_is_a_failed_relaxation(cif):
    """A potential that answers -1e9 eV/atom (SevenNet did for a one-atom fcc O cell) gives a failed
    record, never an energy for a hull or a stable sample."""
    import numpy as np

    from dft.mlip import Item

    class Exploding:
        def evaluate(self, atoms_list):
            return [(-1e9 * len(a), np.zeros((len(a), 3)), np.zeros(6)) for a in atoms_list]

    (record,) = MLIPRelaxer(max_steps=3).relax([Item("x", 0, cif)], Exploding())
    assert record.status == "failed" and "non-physical energy -1e+09 eV/atom" in record.error
    assert math.isnan(record.e_final) and record.cif_relaxed is None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """random_search on 2 perov_5 targets x 2 samples, relaxed by CHGNet and SevenNet, evaluated."""
    need(importlib.util.find_spec("sevenn") is not None, "sevenn is not installed (pip install 'gencsp[mlip]')")
    with module_home(tmp_path_factory, "ensemble") as (root, mp):
        mp.delenv("MP_API_KEY", raising=False)
        assert main(["bench", "--model", "random_search", "--dataset", "perov_5", "--split", "test", "--limit", "2",
                     "--samples-per-target", "2", "--runtime", "local", "--no-evaluate"]) == 0
        path = next((root / "runs").iterdir())
        assert main(["relax", str(path), "--engine", "chgnet,sevennet", *RELAX]) == 0
        yield path, mp


def test_relax_writes_each_engine_and_the_ensemble_with_identities(run):
    path, _ = run
    result = json.loads((path / "relax" / "ensemble.json").read_text())
    assert [e["engine"] for e in result["engines"]] == ["chgnet", "sevennet"]
    for engine in result["engines"]:
        ident = engine["identity"]
        assert ident["checkpoint_sha256"] == sha256_file(ident["checkpoint"]) and ident["version"]
        assert engine["reference"] == f"{engine['engine']} on perov_5/val + elemental prototypes"
    frame = pd.read_parquet(path / "relax" / "ensemble.parquet")
    assert len(frame) == 4 and {"e_above_hull.chgnet", "e_above_hull.sevennet"} <= set(frame.columns)
    assert result == ensemble.summary(frame, [ensemble.engine_record(path, e) for e in ("chgnet", "sevennet")])
    spread = frame[["e_above_hull.chgnet", "e_above_hull.sevennet"]].std(axis=1, ddof=0)
    assert frame["e_above_hull_std"].tolist() == pytest.approx(spread.tolist())


def test_another_checkpoint_does_not_resume(run, monkeypatch, capsys):
    path, _ = run
    older = WHEEL_CHECKPOINTS["chgnet"]("0.2.0")
    # as if a package upgrade had swapped the file behind the default model name
    monkeypatch.setitem(WHEEL_CHECKPOINTS, "chgnet", lambda model: older)
    capsys.readouterr()
    assert main(["relax", str(path), "--engine", "chgnet", *RELAX]) == 1
    assert "another checkpoint of chgnet (checkpoint_sha256 d14ab7c0" in capsys.readouterr().err


def test_evaluate_and_report_show_the_new_metrics_beside_the_classic_ones(run, capsys):
    path, _ = run
    capsys.readouterr()
    assert main(["evaluate", str(path), "--no-chgnet", "--quiet"]) == 0
    printed = capsys.readouterr().out
    for key in ("cdvae.match_rate", "match_rate@2", "metre@2", "polymorph_match_rate@2", "dedup.match_rate@2",
                "ensemble.stable_rate@0.0eV", "ensemble.metastable_rate@0.1eV", "ensemble.chgnet.stable_rate@0.0eV",
                "ensemble.e_above_hull_std"):
        assert key in printed
    assert "Definitions" in printed and "arXiv:2509.12178" in printed
    metrics = json.loads((path / "metrics" / "summary.json").read_text())
    result = json.loads((path / "relax" / "ensemble.json").read_text())
    assert metrics["ensemble.stable_rate@0.0eV"] == result["ensemble"]["stable_rate@0.0eV"]
    assert metrics["ensemble.sevennet.metastable_rate@0.1eV"] == result["engines"][1]["metastable_rate@0.1eV"]
    notes = json.loads((path / "metrics" / "provenance.json").read_text())["notes"]
    assert any("sevenn 0.13.0" in n and "checkpoint sha256" in n for n in notes)
    assert main(["report", str(path), "--no-evaluate"]) == 0
    page = (path / "report.html").read_text()
    assert "METRe, polymorphs, duplicates and the stability ensemble" in page
    assert "ensemble (per-sample mean)" in page and result["engines"][0]["identity"]["checkpoint_sha256"][:16] in page
    assert "METRe@k %" in page and "stable@0 ens. %" in page  # leaderboard columns beside the classic ones
    assert not math.isnan(metrics["metre@2"])


def test_model_and_weights_per_engine():
    from orchestrator.commands.relax import per_engine
    from orchestrator.errors import GencspError

    assert per_engine(["/w/x.pth"], ["chgnet"], "--weights") == {"chgnet": "/w/x.pth"}
    assert per_engine(["sevennet=7net-l3i5", "chgnet=0.2.0"], ["chgnet", "sevennet"], "--model") == {
        "sevennet": "7net-l3i5", "chgnet": "0.2.0"}
    with pytest.raises(GencspError, match="--weights ENGINE=VALUE"):
        per_engine(["/w/x.pth"], ["chgnet", "sevennet"], "--weights")
