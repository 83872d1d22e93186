"""The leaderboard's reading and formatting of run folders (real runs: tests/test_report.py).

These runs are folders written in the documented format with chosen numbers, so
that each formatting rule (units, missing metrics, profiles, escaping, errors)
is checked against a known value.
"""

import csv
import io
import json

import pytest

from orchestrator import leaderboard
from orchestrator.errors import GencspError


def make_run(root, name, task="csp", summary=None, provenance=None, k=1, oracle=(), limit=None, rows=20):
    path = root / name
    path.mkdir(parents=True)
    info = {"run_id": name, "gencsp_version": "0.1.0", "oracle": list(oracle), "samples_requested": rows * k,
            "config": {"model": name.split("-")[0], "dataset": "perov_5", "split": "test", "task": task, "seed": 3,
                       "samples_per_target": k, "limit": limit},
            "dataset": {"name": "perov_5", "split": "test", "rows": rows, "kind": "perovskite", "sha256": "ab" * 32}}
    (path / "run.json").write_text(json.dumps(info))
    if summary is not None:
        (path / "metrics").mkdir()
        (path / "metrics" / "summary.json").write_text(json.dumps(summary))
        (path / "metrics" / "provenance.json").write_text(json.dumps(provenance or {
            "profile": "gencsp", "seed": 0, "counts": {"requested": rows * k, "reference": rows}}))
    return path


CSP_SUMMARY = {"match_rate@2": 0.25, "rms_dist@2": 0.123456, "crmse@2": 0.4, "strict.match_rate@2": 0.1,
               "valid": 0.95, "failed_fraction": 0.05, "wall_seconds_per_sample": 1.5,
               "summed_seconds_per_sample": 3.0, "match_rate@1": 0.2}


def test_csp_row_reads_the_runs_k_and_names_subset_oracle_and_both_costs(tmp_path):
    path = make_run(tmp_path, "cdvae-a", summary=CSP_SUMMARY, k=2, oracle=["space_group"], limit=20)
    entry = leaderboard.load_entry(path)
    headers, rows = leaderboard.rows([entry], "csp")
    row = dict(zip(headers, rows[0], strict=True))
    assert row["match@k %"] == "25.0"  # match_rate@2, not @1
    assert row["RMS@k"] == "0.1235" and row["cRMSE@k"] == "0.4000" and row["strict@k %"] == "10.0"
    assert row["wall s/sample"] == "1.5" and row["summed s/sample"] == "3"
    assert row["oracle"] == "space_group" and row["k / N"] == "k=2" and row["seed"] == 3
    assert row["headline subset"] == "20 targets (first 20 rows of perov_5/test)"


def test_reference_profile_keys_are_read_and_missing_metrics_show_a_dash(tmp_path):
    summary = {"match_rate": 0.5, "rms_dist": 0.2, "valid": None}  # cdvae profile: no @k keys, null valid
    path = make_run(tmp_path, "cdvae-b", summary=summary, provenance={"profile": "cdvae"})
    headers, rows = leaderboard.rows([leaderboard.load_entry(path)], "csp")
    row = dict(zip(headers, rows[0], strict=True))
    assert (row["match@k %"], row["RMS@k"], row["valid %"], row["cRMSE@k"], row["profile"]) == \
        ("50.0", "0.2000", "-", "-", "cdvae")


def test_csv_is_raw_with_the_columns_of_every_task_and_unevaluated_runs(tmp_path):
    make_run(tmp_path, "cdvae-a", summary=CSP_SUMMARY, k=2)
    make_run(tmp_path, "replay-g", task="generate", summary={"cdvae.cov_recall": 0.75, "fd_chgnet": 1.25})
    make_run(tmp_path, "gan-x", task="generate")  # not evaluated
    entries = leaderboard.load_entries(leaderboard.find_runs(tmp_path))
    table = list(csv.DictReader(io.StringIO(leaderboard.as_csv(entries))))
    by_model = {r["model"]: r for r in table}
    assert float(by_model["cdvae"]["match_rate@k"]) == 0.25 and by_model["cdvae"]["cov_recall"] == ""
    assert float(by_model["replay"]["cov_recall"]) == 0.75 and float(by_model["replay"]["fd_chgnet"]) == 1.25
    assert by_model["gan"]["evaluated"] == "False" and by_model["gan"]["profile"] == "not evaluated"


def test_markdown_and_latex_have_a_table_per_task_with_definitions(tmp_path):
    make_run(tmp_path, "my_model-a", summary=CSP_SUMMARY, k=2)
    make_run(tmp_path, "replay-g", task="generate", summary={"valid": 1.0})
    entries = leaderboard.load_entries(leaderboard.find_runs(tmp_path))
    markdown = leaderboard.as_markdown(entries)
    assert markdown.count("### Leaderboard") == 2 and "| my_model | perov_5/test |" in markdown
    assert "- **cRMSE@k**: RMS mean over ALL targets" in markdown
    latex = leaderboard.as_latex(entries)
    assert latex.count(r"\begin{tabular}") == 2 and r"\toprule" in latex
    assert r"my\_model" in latex and r"match@k \%" in latex and "my_model" not in latex


def test_task_filter_and_sorting(tmp_path):
    make_run(tmp_path, "zeta-a", summary=CSP_SUMMARY)
    make_run(tmp_path, "alpha-a", summary=CSP_SUMMARY)
    make_run(tmp_path, "replay-g", task="generate", summary={})
    entries = leaderboard.load_entries(leaderboard.find_runs(tmp_path), task="csp")
    assert [e.model for e in entries] == ["alpha", "zeta"]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(GencspError, match="not a run directory"):
        leaderboard.load_entry(tmp_path)
    path = make_run(tmp_path, "bad-a", summary={})
    (path / "metrics" / "summary.json").write_text("{half")
    with pytest.raises(GencspError, match=r"bad-a/metrics/summary\.json: cannot read as JSON"):
        leaderboard.load_entry(path)
    with pytest.raises(GencspError, match="no such runs folder"):
        leaderboard.find_runs(tmp_path / "nope")


def test_staging_folders_are_not_runs(tmp_path):
    make_run(tmp_path, "m-a", summary=CSP_SUMMARY)
    make_run(tmp_path, ".m-b.creating")
    assert [p.name for p in leaderboard.find_runs(tmp_path)] == ["m-a"]


SMOKE = {"kind": "trained here", "scale": "smoke", "model": "cdvae", "dataset": "perov_5", "split": "val",
         "train_rows": 360, "heldout_rows": 40, "max_epochs": 3, "seconds": 600.0}


@pytest.mark.parametrize("form", ["csv", "markdown", "latex"])
def test_smoke_trained_and_untrained_weights_are_said_wherever_the_numbers_are(tmp_path, form):
    smoke = make_run(tmp_path, "cdvae-s", summary=CSP_SUMMARY)
    untrained = make_run(tmp_path, "gan-u", summary=CSP_SUMMARY)
    plain = make_run(tmp_path, "random_search-p", summary=CSP_SUMMARY)
    for path, weights in ((smoke, SMOKE), (untrained, {"kind": "untrained", "model": "gan"})):
        info = json.loads((path / "run.json").read_text())
        (path / "run.json").write_text(json.dumps({**info, "weights": weights}))
    entries = leaderboard.load_entries([smoke, untrained, plain])
    text = leaderboard.render(entries, form).replace("\\_", "_")  # LaTeX escapes underscores
    assert "trained here, smoke scale" in text and "untrained: pipeline check" in text
    assert "Weights trained here at smoke scale on perov_5 val split (360 structures, at most 3 epochs, 10 min)" \
        in text
    assert "evaluated on perov_5 test" in text and "these numbers say nothing about the published model" in text
    headers, rows = leaderboard.rows(entries, "csp")
    weights = {row[0]: dict(zip(headers, row, strict=True))["weights"] for row in rows}
    assert weights == {"cdvae": "trained here, smoke scale", "gan": "untrained: pipeline check",
                       "random_search": "-"}


def test_weights_trained_on_the_evaluated_split_are_flagged(tmp_path):
    path = make_run(tmp_path, "cdvae-leak", summary=CSP_SUMMARY)
    info = json.loads((path / "run.json").read_text())
    (path / "run.json").write_text(json.dumps({**info, "weights": {**SMOKE, "split": "test"}}))
    assert "WARNING: trained on the split it is evaluated on" in leaderboard.load_entry(path).weights_note()
