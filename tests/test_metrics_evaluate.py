"""`gencsp evaluate` and `evaluate_run`: profiles, keys, invariances, bad rows, run directories."""

import json

import pandas as pd
import pytest

from conftest import MIRROR, module_home, nacl_cif
from orchestrator.cli import main
from orchestrator.metrics.context import Settings
from orchestrator.metrics.evaluate import EvaluationError, evaluate
from orchestrator.metrics.inputs import from_files

CDVAE_KEYS = {"comp_valid", "struct_valid", "valid", "comp_div", "struct_div", "wdist_density", "wdist_num_elems",
              "cov_recall", "cov_precision", "amsd_recall", "amsd_precision", "amcd_recall", "amcd_precision"}


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory):
    """One gencsp home (and fingerprint cache) for the module: each structure is fingerprinted once."""
    with module_home(tmp_path_factory, "metrics") as (path, _):
        yield path


@pytest.fixture(scope="module")
def files(cache_home):
    """A 12-structure perov_5 slice as predictions and as reference, plus bad rows."""
    frame = pd.read_csv(MIRROR / "perov_5" / "test.csv", index_col=0).head(12)
    reference = cache_home / "reference.csv"
    frame[["material_id", "cif"]].to_csv(reference, index=False)
    predictions = cache_home / "predictions.csv"
    frame[["cif"]].to_csv(predictions, index=False)
    bad = cache_home / "bad.csv"
    pd.DataFrame({"cif": [frame["cif"].iloc[0], "", "data_junk\nnot a CIF\n",
                          nacl_cif().replace("_cell_length_a   3.98808225", "_cell_length_a   nan")]}).to_csv(
        bad, index=False)
    return {"reference": reference, "predictions": predictions, "bad": bad, "frame": frame}


def test_registry_is_plain_data_and_profiles_name_their_keys():
    from orchestrator.metrics.registry import DIRECTIONS, PROFILES, load, profile_metrics

    registry = load()
    assert all(m.description and m.direction in DIRECTIONS and set(m.profiles) <= set(PROFILES)
               for m in registry.values())
    assert {key for key, _ in profile_metrics("cdvae", "generate")} == CDVAE_KEYS
    assert {key for key, _ in profile_metrics("cdvae", "csp")} == {"match_rate", "rms_dist"}
    gencsp = [key for key, _ in profile_metrics("gencsp", "generate")]
    assert len(gencsp) == len(set(gencsp)) and {f"cdvae.{k}" for k in CDVAE_KEYS} <= set(gencsp)


def run(files, profile, predictions="predictions", **settings):
    inputs = from_files(files[predictions], "generate", str(files["reference"]), "perovskite",
                        train=str(files["reference"]) if settings.pop("train", False) else None)
    options = {"workers": 1, "progress": False, "chgnet": False, **settings}
    return evaluate(inputs, profile, Settings(**options))


def test_cdvae_profile_keys_exactly(files):
    result = run(files, "cdvae", subset_size=5)
    assert set(result.metrics) == CDVAE_KEYS
    assert result.provenance["libraries"]["pymatgen"] and result.provenance["libraries"]["smact"]
    assert result.provenance["libraries"]["matminer"] and result.provenance["seed"] == 0


def test_diffcsp_profile_keys(files):
    result = run(files, "diffcsp", subset_size=5)
    assert set(result.metrics) == CDVAE_KEYS - {"comp_div", "struct_div"}  # DiffCSP's script skips them


def test_reference_profiles_stop_without_enough_valid_crystals(files):
    with pytest.raises(EvaluationError, match="12/1000"):
        run(files, "cdvae")


def test_a_reference_set_against_itself(files):
    """Full coverage, zero distances, no novelty against itself; every number named."""
    result = run(files, "gencsp", chgnet=True, train=True)
    m = result.metrics
    assert m["valid"] == pytest.approx(result.table["valid"].mean())
    valid = m["valid"]
    assert m["cdvae.cov_recall"] == 1.0  # every crystal is its own nearest neighbour
    assert m["cov_recall_valid"] >= valid  # at least the valid ones cover themselves
    assert m["cdvae.cov_precision"] == 1.0 and m["cov_precision_valid"] == pytest.approx(valid)
    assert m["cov_precision_paired"] == pytest.approx(valid)
    for key in ("cdvae.amsd_recall", "cdvae.amsd_precision", "cdvae.amcd_recall", "cdvae.amcd_precision"):
        assert m[key] == 0.0
    assert m["subset_size"] == round(valid * 12)
    assert m["cdvae.comp_div"] is None  # needs 1000 valid crystals: undefined, with a note
    assert any("cdvae.comp_div" in note for note in result.provenance["notes"])
    assert abs(m["fd_crystalnn"]) < 0.05 and abs(m["fd_chgnet"]) < 5.0
    assert m["novel_rate"] == 0.0 and m["unique_rate"] == 1.0 and m["failed_fraction"] == 0.0
    assert set(result.provenance["metrics"]) == set(m)
    valid_rows = result.table[result.table["valid"]]
    assert valid_rows["unique"].all() and not valid_rows["novel"].any()  # the columns S.U.N. reads


def test_bad_rows_are_invalid_with_reasons_and_count_against(files):
    result = run(files, "gencsp")
    bad = run(files, "gencsp", predictions="bad")
    table = bad.table
    assert table["reason"].tolist()[1:3] == ["empty", "parse_error"]
    assert table["fp_reason"].iloc[3] == "non_finite" and not table["valid"].iloc[3]
    assert bad.metrics["valid"] == pytest.approx(0.25) and bad.metrics["failed_fraction"] == pytest.approx(0.5)
    assert bad.metrics["cdvae.cov_precision"] <= 0.25  # over all four requested samples
    assert result.metrics["failed_fraction"] == 0.0


def test_a_generate_run_without_one_usable_structure_is_scored_not_crashed(files, cache_home):
    """A smoke-scale Wyckoff model whose samples were all rejected at realisation: before, coverage crashed
    building the fingerprint array of zero rows."""
    nothing = cache_home / "nothing.csv"
    pd.DataFrame({"cif": ["", "data_junk\nnot a CIF\n"]}).to_csv(nothing, index=False)
    result = run({**files, "nothing": nothing}, "gencsp", predictions="nothing")
    assert result.metrics["valid"] == 0.0 and result.metrics["failed_fraction"] == 1.0
    assert result.metrics["cdvae.cov_precision"] == 0.0 and result.metrics["cdvae.cov_recall"] == 0.0


def test_workers_and_cache_do_not_change_numbers(files):
    one = run(files, "gencsp", subset_size=5)
    two = run(files, "gencsp", subset_size=5, workers=2, cache=False)
    assert one.metrics == two.metrics
    pd.testing.assert_frame_equal(one.table, two.table)


def test_cli_writes_summary_provenance_and_table(files, cache_home, capsys):
    out = cache_home / "out" / "m.json"
    code = main(["evaluate", "--predictions", str(files["bad"]), "--reference", str(files["reference"]),
                 "--task", "generate", "--kind", "perovskite", "--workers", "1", "--no-chgnet", "--quiet",
                 "--out", str(out)])
    assert code == 0
    summary = json.loads(out.read_text())
    provenance = json.loads((cache_home / "out" / "m.provenance.json").read_text())
    table = pd.read_parquet(cache_home / "out" / "m.structures.parquet")
    assert summary["valid"] == 0.25 and len(table) == 4 and provenance["counts"]["requested"] == 4
    assert "cdvae.cov_recall" in capsys.readouterr().out


def test_cli_user_errors(files, capsys):
    assert main(["evaluate", "--predictions", str(files["predictions"]), "--task", "generate"]) == 1
    assert "--reference" in capsys.readouterr().err
    assert main(["evaluate", "--predictions", str(files["predictions"]), "--task", "generate",
                 "--reference", "nowhere.csv", "--kind", "perovskite"]) == 1


def csp_run(cache_home, source: str):
    """replay on mini CSP: from the test split every target finds itself; the val split has none
    of the test formulas, so every sample fails."""
    runs = cache_home / f"runs-{source}"
    assert main(["bench", "--model", "replay", "--dataset", "mini", "--task", "csp", "--runtime", "local",
                 "--option", f"source_split={source}", "--run-dir", str(runs)]) == 0
    (path,) = runs.glob("replay-mini-test-csp-*")
    return path


def test_evaluate_run_matches_a_perfect_replay(cache_home):
    from orchestrator.metrics import evaluate_run

    path = csp_run(cache_home, "test")
    metrics = evaluate_run(path, workers=1, progress=False)
    assert json.loads((path / "metrics" / "summary.json").read_text()) == metrics
    assert metrics["cdvae.match_rate"] == metrics["diffcsp.match_rate"] == metrics["strict.match_rate@1"] == 1.0
    assert metrics["cdvae.rms_dist"] == pytest.approx(0.0, abs=1e-6) and metrics["failed_fraction"] == 0.0
    provenance = json.loads((path / "metrics" / "provenance.json").read_text())
    assert provenance["inputs"]["run_id"] == path.name and provenance["task"] == "csp"


def test_evaluate_run_counts_failed_samples_against_the_model(cache_home):
    from orchestrator.metrics import evaluate_run

    path = csp_run(cache_home, "val")
    table = pd.read_parquet(path / "structures.parquet")
    assert (table["reason"] == "model_failed").all()
    metrics = evaluate_run(path, profile="cdvae", workers=1, progress=False)
    assert metrics == {"match_rate": 0.0, "rms_dist": None}  # mean over no matched target: undefined
    rows = pd.read_parquet(path / "metrics" / "structures.parquet")
    assert len(rows) == len(table) and (rows["input_reason"] == "model_failed").all() and not rows["valid"].any()
    assert evaluate_run(path, workers=1, progress=False)["failed_fraction"] == 1.0


def test_evaluate_a_generate_run_from_the_command_line(cache_home, capsys):
    assert main(["bench", "--model", "replay", "--dataset", "mini", "--task", "generate", "--runtime", "local",
                 "--option", "source_split=val", "--num-samples", "8", "--run-dir", str(cache_home / "runs")]) == 0
    (path,) = (cache_home / "runs").glob("replay-mini-test-generate-*")
    assert main(["evaluate", str(path), "--workers", "1", "--no-chgnet", "--quiet"]) == 0
    summary = json.loads((path / "metrics" / "summary.json").read_text())
    assert summary["failed_fraction"] == 0.0 and summary["subset_size"] == 8 * summary["valid"]
    assert summary["wall_seconds_per_sample"] > 0 and "model_seconds_per_sample" in summary
    # one shard: wall time and time summed over shards measure the same span
    assert summary["summed_seconds_per_sample"] == pytest.approx(summary["wall_seconds_per_sample"])
