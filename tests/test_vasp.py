"""VASP path: MPRelaxSet inputs and job scripts against golden files, real vasprun.xml parsing, and
the queue with only the run step replaced (it checks the inputs, then copies a real vasprun.xml)."""

import json
import math
import os
import shutil
from pathlib import Path

import ase
import pytest
from pymatgen.core import Lattice, Structure

from dft.queue import array_tasks, collect_records, run_local, tables
from dft.records import RelaxRecord
from dft.tasks import DftFolder, TaskSpec
from dft.vasp import VaspInputError, VaspMaker, _vasprun
from orchestrator import clusters
from orchestrator.executors.slurm import render_script
from orchestrator.structures import cif_text

GOLDEN = Path(__file__).parent / "golden" / "vasp"
ASE_VASP = Path(ase.__file__).parent / "test" / "testdata" / "vasp"
UPDATE = os.environ.get("GENCSP_UPDATE_GOLDEN") == "1"  # rewrite the golden files after a deliberate change


def same_as_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (GENCSP_UPDATE_GOLDEN=1 rewrites it)"


def feo() -> Structure:
    return Structure(Lattice.cubic(4.33), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


@pytest.fixture(autouse=True)
def no_potcars(monkeypatch):
    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    from pymatgen.core import SETTINGS

    monkeypatch.delitem(SETTINGS, "PMG_VASP_PSP_DIR", raising=False)


def test_mprelaxset_inputs_match_the_golden_files(tmp_path):
    VaspMaker().write_inputs(feo(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["INCAR", "KPOINTS", "POSCAR", "POTCAR.spec",
                                                          "custodian.yaml"]
    for name in ("INCAR", "KPOINTS", "POSCAR", "POTCAR.spec", "custodian.yaml"):
        same_as_golden((tmp_path / name).read_text(), f"FeO/{name}")
    incar = (tmp_path / "INCAR").read_text()
    assert "ENCUT = 520" in incar and "ISIF = 3" in incar and "LDAUU = 5.3 0" in incar
    # custodian can build the run from the spec as written
    import yaml
    from custodian import Custodian

    spec = yaml.safe_load((tmp_path / "custodian.yaml").read_text())
    built = Custodian.from_spec(spec)
    assert [j.suffix for j in built.jobs] == [".relax1", ".relax2"] and built.max_errors == 5
    walltime = [h for h in built.handlers if type(h).__name__ == "WalltimeHandler"][0]
    assert walltime.wall_time == 4 * 3600 and walltime.buffer_time == 300
    assert list(built.jobs[0].vasp_cmd) == ["srun", "vasp_std"]


def test_a_molecule_keeps_its_box_and_potcars_come_from_pmg_vasp_psp_dir(tmp_path, monkeypatch):
    dimer = Structure(Lattice.cubic(8.0), ["O", "O"], [[0.5, 0.5, 0.5], [0.65, 0.5, 0.5]])
    VaspMaker(input_set="MPScanRelaxSet", runner="plain").write_inputs(dimer, tmp_path / "a", relax_cell=False)
    incar = (tmp_path / "a" / "INCAR").read_text()
    assert "ISIF = 2" in incar and "METAGGA = R2scan" in incar
    assert not (tmp_path / "a" / "custodian.yaml").exists()
    monkeypatch.setenv("PMG_VASP_PSP_DIR", str(tmp_path / "psp"))
    with pytest.raises(VaspInputError, match=r"PMG_VASP_PSP_DIR=.*psp: cannot write the POTCAR of Fe_pv, O"):
        VaspMaker().write_inputs(feo(), tmp_path / "b")


def test_job_scripts_match_the_golden_files():
    profile = clusters.get("jean-zay-cpu", {"account": "abc"})
    dirs = [Path(f"/lustre/work/abc/runs/r1/dft/vasp/tasks/{k:05d}") for k in range(2)]
    setup = ("module load vasp/6.4.3", ". $WORK/venvs/gencsp/bin/activate")
    for maker, name in ((VaspMaker(setup=setup), "job-custodian.sh"), (VaspMaker(runner="plain"), "job-plain.sh")):
        tasks, resources = array_tasks(maker, dirs)
        script = render_script(tasks, Path("/lustre/work/abc/runs/r1/dft/vasp/slurm"), profile, resources,
                               name="dft-vasp", setup=list(maker.setup))
        same_as_golden(script, name)
    assert "cstdn run custodian.yaml" in (GOLDEN / "job-custodian.sh").read_text()
    assert "module load vasp/6.4.3" in (GOLDEN / "job-custodian.sh").read_text()
    assert "srun vasp_std > vasp.out" in (GOLDEN / "job-plain.sh").read_text()


def test_real_vasprun_files_parse_into_records_and_entries(tmp_path):
    for name, formula, energy in (("vasprun_dfpt.xml", "NaCl", -6.74587304), ("vasprun_pstress.xml", "C", -20.24010135)):
        task = tmp_path / name
        task.mkdir()
        shutil.copyfile(ASE_VASP / name, task / "vasprun.xml")
        record = VaspMaker().parse(task, "t", 0)
        assert record.status == "ok" and record.formula == formula and record.num_atoms == 2
        assert record.energy == pytest.approx(energy) and record.e_final == pytest.approx(energy / 2)
        assert record.steps == 1 and record.converged and record.rmsd == pytest.approx(0, abs=1e-6)
        entry = json.loads(record.entry)
        assert entry["parameters"]["potcar_symbols"] and entry["parameters"]["run_type"] in ("GGA", "PBE")
    (tmp_path / "cut").mkdir()
    text = (ASE_VASP / "vasprun_dfpt.xml").read_text()
    (tmp_path / "cut" / "vasprun.xml").write_text(text[: len(text) // 2])
    broken = VaspMaker().parse(tmp_path / "cut", "t", 1)
    assert broken.status == "failed" and broken.error.startswith("vasprun.xml: ")


class ReplayVasp(VaspMaker):
    """Only `run` is replaced: it checks the inputs the real step wrote, then copies a real vasprun.xml."""

    def run(self, directory, timeout=None):
        incar = (Path(directory) / "INCAR").read_text()
        assert "IBRION = 2" in incar and "NSW = 99" in incar
        assert (Path(directory) / "POTCAR.spec").read_text().split() == ["Na_pv", "Cl"]
        shutil.copyfile(ASE_VASP / "vasprun_dfpt.xml", Path(directory) / "vasprun.xml")
        return 0


def test_queue_collects_vasp_runs_and_mp2020_checks_their_potcars(tmp_path, monkeypatch):
    from pymatgen.entries.computed_entries import ComputedEntry

    from dft.assess import assess
    from dft.references import Reference

    run = tmp_path / "run"
    nacl = _vasprun(ASE_VASP / "vasprun_dfpt.xml").initial_structure
    maker = ReplayVasp()
    folder = DftFolder(run, "vasp")
    added = folder.add([TaskSpec.sample("nacl", 0, "generated", cif_text(nacl)),
                        TaskSpec.sample("nacl", 1, "generated", cif_text(nacl))], maker)
    run_local(maker, added[:1])  # the second task never ran
    records = collect_records(folder, maker, queue=None)
    samples, references = tables(records)
    assert len(samples) == 1 and len(references) == 0 and samples.loc[0, "e_final"] == pytest.approx(-6.74587304 / 2)
    # the MP reference: MP2020 refuses this vasprun (GGA = PE in its INCAR is not MP's run type "GGA";
    # its POTCARs are PBE Na where MP uses Na_pv): an error row, not a number
    import pandas as pd

    reference = Reference("mp", "MP test", [ComputedEntry("Na", -1.3), ComputedEntry("Cl2", -3.6)])
    run_samples = pd.DataFrame({"target_id": ["nacl", "nacl"], "sample_index": [0, 1], "status": ["accepted"] * 2})
    summary = assess(folder.path, run_samples, samples, reference, "vasp", maker.corrections)
    table = pd.read_parquet(folder.path / "stability.parquet")
    assert math.isnan(table.loc[0, "e_above_hull"]) and "invalid run type PBE" in table.loc[0, "hull_error"]
    assert summary["samples_requested"] == 2 and summary["stable_rate"] == 0.0
    # collecting again parses nothing twice
    stamp = (added[0] / "record.json").stat().st_mtime_ns
    assert len(collect_records(folder, maker, queue=None)) == 1
    assert (added[0] / "record.json").stat().st_mtime_ns == stamp
    assert RelaxRecord(**json.loads((added[0] / "record.json").read_text())).status == "ok"
