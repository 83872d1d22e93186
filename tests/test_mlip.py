"""CHGNet relaxations of real perov_5 structures: batched FIRE, records, failures, the potential registry."""

import math
import warnings

import pandas as pd
import pytest

from conftest import MIRROR
from dft.mlip import Item, MLIPRelaxer, SystemicFailure
from dft.potentials import POTENTIALS, PotentialError, load


@pytest.fixture(scope="module")
def perov():
    return pd.read_csv(MIRROR / "perov_5" / "test.csv").head(3)


@pytest.fixture(scope="module")
def chgnet():
    return MLIPRelaxer().load(threads=1)


def ase_fire(cif, steps):
    """The reference: ASE's own FIRE on a FrechetCellFilter with the CHGNet calculator."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from orchestrator.structures import read_structure

    atoms = AseAtomsAdaptor.get_atoms(read_structure(cif))
    atoms.calc = CHGNetCalculator(on_isolated_atoms="ignore", use_device="cpu")
    optimizer = FIRE(FrechetCellFilter(atoms), logfile=None)
    optimizer.run(fmax=0.05, steps=steps)
    return atoms.get_potential_energy() / len(atoms), optimizer.nsteps


def test_batched_relaxation_follows_ase_fire_and_records_every_structure(perov, chgnet):
    steps = 25
    cifs = perov["cif"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e_ase, n_ase = ase_fire(cifs[0], steps)
    single = MLIPRelaxer(batch_size=1, max_steps=steps).relax([Item("a", 0, cifs[0])], chgnet)[0]
    # the same algorithm on the same filter: the same trajectory
    assert single.steps == n_ase and single.e_final == pytest.approx(e_ase, abs=1e-5)

    items = [Item(str(m), 0, c) for m, c in zip(perov["material_id"], cifs, strict=True)]
    items.append(Item("broken", 0, "data_x\n_cell_length_a 3\n"))
    batch = MLIPRelaxer(batch_size=16, max_steps=steps).relax(items, chgnet)
    assert [r.target_id for r in batch] == [i.target_id for i in items]
    assert batch[0].e_final == pytest.approx(single.e_final, abs=1e-4)  # batching does not change results
    for record in batch[:3]:
        assert record.status == "ok" and record.error is None and record.num_atoms == 5
        assert record.e_final < record.e_initial  # FIRE went downhill
        assert record.energy == pytest.approx(5 * record.e_final)
        assert record.converged == (record.steps < steps) and 0 < record.steps <= steps
        assert record.cif_relaxed.startswith("# generated using pymatgen")
        assert record.seconds > 0
    assert any(math.isfinite(r.rmsd) for r in batch[:3])
    broken = batch[3]
    assert broken.status == "failed" and "StructureError" in broken.error and math.isnan(broken.e_final)


def test_a_systemic_failure_stops_the_work(chgnet):
    relaxer = MLIPRelaxer(batch_size=2, min_failures=4)
    items = [Item(f"bad{i}", 0, "not a cif") for i in range(8)]
    with pytest.raises(SystemicFailure, match="4 of 4 structures failed"):
        relaxer.relax(items, chgnet)


def test_registry_explains_what_is_missing(tmp_path):
    assert set(POTENTIALS) >= {"chgnet", "sevennet", "mace", "orb", "mattersim"}
    assert POTENTIALS["chgnet"].corrections == "included" and POTENTIALS["mace"].corrections == "mp2020"
    with pytest.raises(PotentialError, match="did you mean 'chgnet'"):
        load("chgnett")
    import importlib.util

    for name in ("mace", "orb", "mattersim"):
        spec = POTENTIALS[name]
        if importlib.util.find_spec(spec.module) is None:
            with pytest.raises(PotentialError, match=f"pip install {spec.distribution}"):
                load(name)
    if importlib.util.find_spec("mace") is not None:  # installed: the weights path is what is missing
        from dft.potentials import LoadOptions

        with pytest.raises(PotentialError, match="weights"):
            load("mace")
        with pytest.raises(PotentialError, match="not found"):
            load("mace", LoadOptions(weights=str(tmp_path / "none.model")))
