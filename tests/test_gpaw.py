"""GPAW relaxations of two small cells of a real bench run, submitted as a job array to the one-node
SLURM, collected into the run with a GPAW hull; failed tasks recorded with their error."""

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import MIRROR, need
from orchestrator.cli import main

FAST = ["--set", "ecut=250", "--set", "kpt_density=1.5", "--set", "steps=10", "--set", "fmax=0.1",
        "--set", "seconds=600"]


def gpaw_here() -> bool:
    probe = subprocess.run(["/usr/bin/python3", "-c", "import gpaw"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from orchestrator.executors.slurm_array import missing

    need(missing() is None, "SLURM is not installed here; .ci/run installs and starts one")
    need(gpaw_here(), "GPAW is not installed for /usr/bin/python3 (apt install gpaw gpaw-data)")
    root = tmp_path_factory.mktemp("gpaw")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENCSP_HOME", str(root / "home"))
        patch.setenv("GENCSP_DATA_MIRROR", str(MIRROR))
        patch.setenv("GENCSP_RUNS", str(root / "runs"))
        patch.setenv("GENCSP_CLUSTERS", str(root / "clusters.yaml"))
        patch.delenv("MP_API_KEY", raising=False)
        assert main(["bench", "--model", "replay", "--dataset", "mini", "--split", "test", "--task", "csp",
                     "--limit", "4", "--option", "source_split=test", "--runtime", "local", "--no-evaluate"]) == 0
        yield root, next((root / "runs").iterdir())


@pytest.fixture(scope="module")
def submitted(env):
    _, run = env
    # CsCl and Si (the cells of at most 2 atoms), plus one GPAW reference per element: Cs, Cl, Si
    assert main(["dft", "submit", str(run), "--engine", "gpaw", "--profile", "local", "--max-atoms", "2",
                 *FAST, "--wait"]) == 0
    return run


def copy_run(env, name):
    root, run = env
    copy = root / name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("dft"))
    return copy


def test_gpaw_tasks_run_through_slurm_and_are_collected_with_a_gpaw_hull(submitted, capsys):
    run = submitted
    folder = run / "dft" / "gpaw"
    tasks = [json.loads(p.read_text()) for p in sorted(folder.glob("tasks/*/task.json"))]
    assert [t["key"] for t in tasks] == ["sample:mini-01-CsCl:0", "sample:mini-03-Si:0", "reference:element:Cl:dimer",
                                         "reference:element:Cs:bcc", "reference:element:Si:diamond"]
    assert [t["relax_cell"] for t in tasks] == [True, True, False, True, True]
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["profile"] == "local" and settings["settings"]["ecut"] == 250
    assert settings["versions"]["gpaw"] and settings["versions"]["interpreter"] == "/usr/bin/python3"
    assert all(json.loads(p.read_text())[-1]["task_id"].count("_") == 1 for p in folder.glob("tasks/*/submissions.json"))
    capsys.readouterr()
    assert main(["dft", "status", str(run)]) == 0
    assert "finished" in capsys.readouterr().out
    assert main(["dft", "collect", str(run), "--engine", "gpaw"]) == 0

    results = pd.read_parquet(folder / "results.parquet")
    assert list(results["target_id"]) == ["mini-01-CsCl", "mini-03-Si"] and set(results["status"]) == {"ok"}
    assert (results["steps"] <= 10).all() and results["e_final"].notna().all()
    refs = {t["target_id"]: json.loads((p.parent / "record.json").read_text())
            for p, t in zip(sorted(folder.glob("tasks/*/task.json")), tasks, strict=True) if t["role"] == "reference"}
    table = pd.read_parquet(folder / "stability.parquet").set_index("target_id")
    # with only elements in the hull, the energy above hull is the formation energy from these very tasks
    si = table.loc["mini-03-Si"]
    assert si["e_above_hull"] == pytest.approx(si["e_final"] - refs["element:Si:diamond"]["e_final"])
    cscl = table.loc["mini-01-CsCl"]
    expected = cscl["e_final"] - (refs["element:Cs:bcc"]["e_final"] + refs["element:Cl:dimer"]["e_final"]) / 2
    assert cscl["e_above_hull"] == pytest.approx(expected) and cscl["e_form"] == pytest.approx(expected)
    assert set(table["scheme"]) == {"none (reference computed with the same engine)"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["samples_requested"] == 4 and summary["dft_selected"] == 2 and summary["relaxed_ok"] == 2
    assert summary["reference"]["kind"] == "engine:gpaw" and summary["reference"]["tasks"] == 3
    assert summary["stable_rate"] == pytest.approx((table["e_above_hull"] <= 0).sum() / 4)

    # collecting and submitting again redo nothing
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("tasks/*/record.json")}
    assert len(stamps) == 5
    assert main(["dft", "collect", str(run), "--engine", "gpaw"]) == 0
    assert {p: p.stat().st_mtime_ns for p in folder.glob("tasks/*/record.json")} == stamps
    capsys.readouterr()
    assert main(["dft", "submit", str(run), "--engine", "gpaw", "--profile", "local", "--max-atoms", "2", *FAST]) == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert main(["dft", "submit", str(run), "--engine", "gpaw", "--profile", "local", "--max-atoms", "2",
                 "--set", "ecut=300"]) == 1  # other settings in the same folder: refused


def test_failed_calculations_are_recorded_with_their_error(env, capsys):
    broken = ["--set", "python=/nonexistent/python3", "--references", "none", "--max-atoms", "2"]
    slurm_run = copy_run(env, "slurm-broken")
    assert main(["dft", "submit", str(slurm_run), "--engine", "gpaw", "--profile", "local", *broken, "--wait"]) == 0
    local_run = copy_run(env, "local-broken")
    assert main(["dft", "submit", str(local_run), "--engine", "gpaw", "--executor", "local", *broken]) == 0
    for run in (slurm_run, local_run):
        assert main(["dft", "collect", str(run), "--engine", "gpaw"]) == 0
        results = pd.read_parquet(Path(run) / "dft" / "gpaw" / "results.parquet")
        assert len(results) == 2 and set(results["status"]) == {"failed"}
        assert all("/nonexistent/python3" in e and "not found" in e for e in results["error"]), list(results["error"])
        summary = json.loads((Path(run) / "dft" / "gpaw" / "summary.json").read_text())
        assert summary["relax_failed"] == 2 and summary["stable_rate"] == 0.0
    assert "SLURM" in pd.read_parquet(slurm_run / "dft" / "gpaw" / "results.parquet")["error"][0]
