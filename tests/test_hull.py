"""Energy above hull: references from a file and from the Materials Project (cached, key never stored)."""

import gzip
import json
import math

import pytest
from monty.json import MontyEncoder
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from dft import references
from dft.hull import Candidate, HullError, above_hull, mp_parameters, scheme_for
from dft.references import Reference, ReferenceError, from_file, from_mp

LI_O = [ComputedEntry("Li", -1.9, entry_id="li"), ComputedEntry("O2", -9.8, entry_id="o2"),
        ComputedEntry("Li2O", -14.3, entry_id="li2o")]


def write_entries(path, entries):
    path.write_text(json.dumps(entries, cls=MontyEncoder))
    return path


def test_energy_above_hull_from_a_file_of_entries(tmp_path):
    reference = from_file(write_entries(tmp_path / "ref.json", LI_O))
    assert reference.kind == "mp" and reference.details["sha256"]
    candidates = [Candidate("t", 0, ComputedEntry("Li2O2", -19.0)),  # worked by hand below
                  Candidate("t", 1, ComputedEntry("Li2O", -15.2)),  # below the hull: negative
                  Candidate("u", 0, ComputedEntry("LiF", -10.0)),  # no fluorine in the reference
                  Candidate("v", 0, None, "not relaxed: boom")]
    table = above_hull(candidates, reference, "chgnet", "included")
    # formation energies: Li2O -5.6/3, Li2O2 -5.4/4 eV/atom; the hull at x_O = 1/2 is -1.4 eV/atom
    assert table.loc[0, "e_above_hull"] == pytest.approx(0.05)
    assert table.loc[0, "e_form"] == pytest.approx(-1.35) and table.loc[0, "decomposition"] == "Li2O + O2"
    assert table.loc[1, "e_above_hull"] == pytest.approx((-15.2 + 14.3) / 3)
    assert math.isnan(table.loc[2, "e_above_hull"]) and "no entry for element(s) F" in table.loc[2, "hull_error"]
    assert table.loc[3, "hull_error"] == "not relaxed: boom"
    assert set(table["reference"]) == {"entries file ref.json"}
    assert set(table["scheme"]) == {"MP2020 in the training targets of the potential, not applied again"}


def test_bad_reference_files_are_named(tmp_path):
    with pytest.raises(ReferenceError, match="not found"):
        from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ReferenceError, match="bad.json: expected a non-empty list"):
        from_file(tmp_path / "bad.json")


def test_only_comparable_energies_are_compared():
    mp = Reference("mp", "MP", LI_O)
    assert scheme_for("chgnet", "included", mp) == "included"
    assert scheme_for("sevennet", "mp2020", mp) == "mp2020"
    assert scheme_for("gpaw", "none", Reference("engine:gpaw", "gpaw refs", [])) == "none"
    with pytest.raises(HullError, match="gpaw energies .* cannot be compared"):
        scheme_for("gpaw", "none", mp)
    with pytest.raises(HullError):
        scheme_for("chgnet", "included", Reference("engine:gpaw", "gpaw refs", []))


def test_mp2020_corrections_apply_to_raw_mp_like_energies():
    feo = Structure(Lattice.cubic(4.3), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    params = mp_parameters(feo)
    assert params["run_type"] == "GGA+U" and params["hubbards"] == {"Fe": 5.3}
    assert params["potcar_symbols"] == ["PAW_PBE Fe_pv", "PAW_PBE O"]
    reference = Reference("mp", "MP", [ComputedEntry("Fe", -8.0), ComputedEntry("O2", -9.8)])
    entry = ComputedStructureEntry(feo, -15.0, parameters=params)
    raw = above_hull([Candidate("t", 0, entry)], reference, "chgnet", "included")
    corrected = above_hull([Candidate("t", 0, entry.copy())], reference, "sevennet", "mp2020")
    # MP2020: U correction for Fe (-2.256 eV) and oxide (-0.687 eV), over 2 atoms
    assert corrected.loc[0, "e_above_hull"] - raw.loc[0, "e_above_hull"] == pytest.approx((-2.256 - 0.687) / 2)
    assert corrected.loc[0, "scheme"].startswith("MP2020 (MaterialsProject2020Compatibility")
    # an entry MP2020 cannot vouch for (no POTCAR information) is an error row, not a number
    bare = above_hull([Candidate("t", 0, ComputedStructureEntry(feo, -15.0))], reference, "sevennet", "mp2020")
    assert math.isnan(bare.loc[0, "e_above_hull"]) and bare.loc[0, "hull_error"].startswith("MP2020")


def test_materials_project_entries_are_cached_and_the_key_never_stored(tmp_path, monkeypatch, home):
    secret = "mpkey-Zq81sEcReT"
    calls = []

    def fake_fetch(elements, api_key):  # the network call: MP is unreachable from here
        assert api_key == secret
        calls.append(tuple(elements))
        if "F" in elements:
            raise RuntimeError(f"401 Unauthorized for key {api_key}")
        return LI_O, {"database_version": "2099.01.01"}

    monkeypatch.setenv("MP_API_KEY", secret)
    monkeypatch.setattr(references, "mp_fetch", fake_fetch)
    reference = from_mp([frozenset({"Li", "O"})])
    assert calls == [("Li", "O")] and len(reference.entries) == 3
    assert reference.description == "Materials Project GGA_GGA+U (database 2099.01.01)"
    cached = references.mp_cache_dir() / "Li-O.json.gz"
    assert cached.is_file() and str(cached).startswith(str(home))
    monkeypatch.delenv("MP_API_KEY")
    again = from_mp([frozenset({"O", "Li"})])  # from the cache: no key needed, no call
    assert calls == [("Li", "O")] and len(again.entries) == 3
    with pytest.raises(ReferenceError, match="MP_API_KEY is not set"):
        from_mp([frozenset({"Na", "Cl"})])
    monkeypatch.setenv("MP_API_KEY", secret)
    with pytest.raises(ReferenceError) as failure:
        from_mp([frozenset({"Li", "F"})])
    assert secret not in str(failure.value) and "***" in str(failure.value)
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            data = gzip.decompress(data) if path.suffix == ".gz" else data
            assert secret.encode() not in data, path
