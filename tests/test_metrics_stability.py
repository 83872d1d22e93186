"""Stability metrics joined to the metrics registry: `gencsp relax` then `gencsp evaluate`."""

import json

import pytest

from orchestrator.cli import main
from orchestrator.metrics import evaluate_run


@pytest.fixture(scope="module")
def relaxed_run(tmp_path_factory):
    """A random_search CSP run on mini (2 samples per target), relaxed with CHGNet against a stand-in
    hull (one entry per element at -1 eV/atom: the Materials Project is out of reach here)."""
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

    from conftest import module_home

    with module_home(tmp_path_factory, "stability") as (root, _):
        yield _relax(root, ComputedEntry, Composition)


def _relax(root, ComputedEntry, Composition):
    assert main(["bench", "--model", "random_search", "--dataset", "mini", "--limit", "3", "--samples-per-target",
                 "2", "--runtime", "local", "--run-dir", str(root / "runs"), "--no-evaluate"]) == 0
    (run,) = (root / "runs").iterdir()
    no_relax = evaluate_run(run, progress=False, chgnet=False)
    elements = {str(e) for f in ("SrTiO3", "CsCl", "Li2O") for e in Composition(f).elements}
    entries = root / "entries.json"
    entries.write_text(json.dumps([ComputedEntry(el, -1.0).as_dict() for el in sorted(elements)]))
    assert main(["relax", str(run), "--steps", "10", "--reference", "file", "--reference-entries", str(entries)]) == 0
    return run, no_relax, evaluate_run(run, progress=False, chgnet=False)


def test_stability_appears_only_after_relax(relaxed_run):
    _, before, after = relaxed_run
    keys = {"stable_rate@0.0eV", "metastable_rate@0.1eV", "relax_rmsd_mean"}
    assert not keys & set(before)
    assert keys <= set(after)


def test_rates_equal_the_dft_functions_over_all_requested_samples(relaxed_run):
    from dft.relax_run import load_stability
    from dft.stability import stability_rates

    run, _, metrics = relaxed_run
    table = load_stability(run)
    assert len(table) == 6  # every requested sample, relaxed or not
    rates = stability_rates(table)
    assert metrics["stable_rate@0.0eV"] == rates["stable_rate"]
    assert metrics["metastable_rate@0.1eV"] == rates["metastable_rate"]
    assert metrics["stable_rate@0.0eV"] <= metrics["metastable_rate@0.1eV"]


def test_the_hull_reference_is_named_and_sun_needs_novelty(relaxed_run):
    run, _, metrics = relaxed_run
    notes = json.loads((run / "metrics" / "provenance.json").read_text())["notes"]
    assert any("hull reference" in n and "entries.json" in n for n in notes), notes
    assert "sun_rate@0.0eV" not in metrics  # no training split: novelty unknown, S.U.N. not reported
