"""`gencsp relax` on a real bench run: CHGNet relaxations, an engine hull, resume, the MP key kept out."""

import gzip
import json

import pandas as pd
import pytest
from pymatgen.core import Composition

from conftest import module_home
from dft import references
from dft.relax_run import load_stability
from dft.stability import stability_rates
from orchestrator.cli import main

RELAX = ["--steps", "15", "--reference-split", "val", "--element-prototypes", "fcc,dimer"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with module_home(tmp_path_factory, "relax") as (root, mp):
        mp.delenv("MP_API_KEY", raising=False)
        assert main(["bench", "--model", "replay", "--dataset", "perov_5", "--split", "test", "--task", "generate",
                     "--num-samples", "3", "--option", "source_split=test", "--runtime", "local", "--no-evaluate"]) == 0
        path = next((root / "runs").iterdir())
        assert main(["relax", str(path), *RELAX, "--chunk-size", "1"]) == 0
        yield path, mp, root


def test_relax_writes_relaxations_hull_and_summary(run):
    path, _, _ = run
    folder = path / "relax" / "chgnet"
    table = pd.read_parquet(folder / "stability.parquet")
    assert len(table) == 3 and set(table["relax_status"]) == {"ok"}
    assert table["e_above_hull"].notna().all() and table["hull_error"].isna().all()
    assert set(table["reference"]) == {"chgnet on perov_5/val + elemental prototypes"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["samples_requested"] == 3 and summary["relaxed_ok"] == 3
    assert summary["stable_threshold_ev_per_atom"] == 0.0 and summary["metastable_threshold_ev_per_atom"] == 0.1
    assert summary["stable_rate"] == pytest.approx((table["e_above_hull"] <= 0).sum() / 3)
    assert summary["scheme"] == "none (reference computed with the same engine)"
    assert summary["reference"]["engine"] == "chgnet" and summary["reference"]["failed"] == 0
    # every element of the samples has an elemental reference in the hull
    elements = {str(el) for f in table["formula"] for el in Composition(f)}
    assert elements == set(summary["reference"]["elements"])
    joined = load_stability(path)
    assert len(joined) == 3 and stability_rates(joined)["stable_rate"] == summary["stable_rate"]
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["relaxer"]["max_steps"] == 15 and settings["potential"]["version"] == "0.4.2"


def test_relax_resumes_without_redoing_finished_parts(run, capsys):
    path, _, _ = run
    folder = path / "relax" / "chgnet"
    before = pd.read_parquet(folder / "relaxed.parquet")
    parts = sorted((folder / "parts").glob("*.parquet"))
    assert [p.name for p in parts] == ["00000.parquet", "00001.parquet", "00002.parquet"]  # one sample each
    stamps = {p.name: p.stat().st_mtime_ns for p in parts}
    assert main(["relax", str(path), *RELAX]) == 0  # nothing to redo
    assert {p.name: p.stat().st_mtime_ns for p in parts} == stamps
    parts[1].unlink()  # as if killed before that chunk was written: only its sample is relaxed again
    assert main(["relax", str(path), *RELAX, "--workers", "2"]) == 0  # in worker processes this time
    redone = sorted((folder / "parts").glob("*.parquet"))
    assert [p.name for p in redone] == ["00000.parquet", "00002.parquet", "00003.parquet"]
    assert {p.name: p.stat().st_mtime_ns for p in redone if p.name != "00003.parquet"} == {
        k: v for k, v in stamps.items() if k != "00001.parquet"}
    after = pd.read_parquet(folder / "relaxed.parquet")
    pd.testing.assert_frame_equal(after.drop(columns=["seconds"]), before.drop(columns=["seconds"]))
    capsys.readouterr()
    assert main(["relax", str(path), "--steps", "16", "--reference", "none"]) == 1
    assert "other settings (max_steps)" in capsys.readouterr().err


def test_mp_reference_key_stays_out_of_every_file_and_output(run, capsys):
    path, mp, root = run
    secret = "mpkey-9fh3Kx0SECRET"
    fetched = []

    def fake_fetch(elements, api_key):  # the network boundary: MP is unreachable from here
        from pymatgen.entries.computed_entries import ComputedEntry

        fetched.append(api_key == secret)
        return [ComputedEntry(el, -5.0, entry_id=f"mp-{el}") for el in elements], {"database_version": "test"}

    mp.setenv("MP_API_KEY", secret)
    mp.setattr(references, "mp_fetch", fake_fetch)
    assert main(["relax", str(path), *RELAX]) == 0  # auto: MP because the key is set
    assert fetched and all(fetched)
    output = capsys.readouterr()
    assert "Materials Project" in output.out and secret not in output.out + output.err
    summary = json.loads((path / "relax" / "chgnet" / "summary.json").read_text())
    assert summary["reference"]["source"] == "mp-api"
    assert summary["scheme"] == "MP2020 in the training targets of the potential, not applied again"
    for file in root.rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            data = gzip.decompress(data) if file.suffix == ".gz" else data
            assert secret.encode() not in data, file


def test_sun_and_energy_ranking_join_the_evaluation_table(run):
    path, _, _ = run
    # the per-structure table `gencsp evaluate` writes: uniqueness groups, novelty, CSP matches
    table = pd.read_parquet(path / "structures.parquet")[["target_id", "sample_index"]].copy()
    table["unique_group"] = pd.array([0, 0, 1], dtype="Int64")
    table["novel"] = pd.array([True, True, False], dtype="boolean")
    table["rms_loose"] = [0.05, None, None]
    (path / "metrics").mkdir(exist_ok=True)
    table.to_parquet(path / "metrics" / "structures.parquet")
    assert main(["relax", str(path), *RELAX, "--reference", "engine"]) == 0
    summary = json.loads((path / "relax" / "chgnet" / "summary.json").read_text())
    stability = pd.read_parquet(path / "relax" / "chgnet" / "stability.parquet").sort_values("sample_index")
    stable = (stability["e_above_hull"] <= 0).tolist()
    assert summary["sun_count"] == int(stable[0])  # sample 1 repeats sample 0's group, sample 2 is not novel
    assert summary["sun_rate"] == pytest.approx(int(stable[0]) / 3)
    lowest = stability["e_final"].idxmin()
    assert summary["lowest_is_match_rate"] == float(stability.loc[lowest, "sample_index"] == 0)
    assert summary["targets_with_match"] == 1


def test_dft_selection_starts_from_the_mlip_relaxed_structures(run):
    from dft.tasks import DftFolder, TaskError, select
    from dft.vasp import VaspMaker

    path, _, _ = run
    stability = pd.read_parquet(path / "relax" / "chgnet" / "stability.parquet")
    chosen = select(path, "metastable-by-mlip", top=2)
    expected = stability[stability["e_above_hull"] <= 0.1].sort_values("e_above_hull").head(2)
    assert [(s.target_id, s.sample_index) for s in chosen] == list(zip(expected["target_id"], expected["sample_index"],
                                                                      strict=True))
    assert all(s.start == "chgnet-relaxed" for s in chosen)
    assert [s.cif for s in chosen] == expected["cif_relaxed"].tolist()
    added = DftFolder(path, "vasp").add(chosen, VaspMaker())
    assert len(added) == len(chosen) and all((d / "POTCAR.spec").is_file() for d in added)
    assert DftFolder(path, "vasp").add(chosen, VaspMaker()) == []  # the same tasks are not added twice
    with pytest.raises(TaskError, match="gencsp relax"):
        select(path, "stable-by-mlip", mlip="sevennet")
