"""Energy above the convex hull of a reference, with the reference and scheme recorded.

Energies are only compared when they are on the same footing:
- the reference was computed with the same engine (`engine:<name>`): no correction
  on either side;
- the reference is Materials-Project-compatible (`mp`) and the candidate energies are
  too: CHGNet (MP2020 already in its training targets, not applied again), potentials
  trained on raw MPtrj energies and VASP runs with MPRelaxSet (MP2020 applied here with
  MaterialsProject2020Compatibility; an entry it rejects gets an error, not a number).
Anything else (e.g. GPAW energies against MP) is refused with a clear error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from orchestrator.errors import GencspError

from .records import short_error

# How an engine's energies relate to the MP hull (see dft/potentials.py `corrections`).
INCLUDED, MP2020, NONE = "included", "mp2020", "none"
SCHEMES = {
    INCLUDED: "MP2020 in the training targets of the potential, not applied again",
    MP2020: "MP2020 (MaterialsProject2020Compatibility, MPRelaxSet parameters)",
    NONE: "none (reference computed with the same engine)",
}
COLUMNS = ("target_id", "sample_index", "engine", "e_above_hull", "e_form", "decomposition", "reference",
           "scheme", "hull_error")


class HullError(GencspError):
    """Candidate energies and reference energies that must not be compared."""


@dataclass
class Candidate:
    target_id: str
    sample_index: int
    entry: object | None  # pymatgen ComputedEntry, uncorrected; None when the relaxation failed
    error: str | None = None


def scheme_for(engine: str, correction: str, reference) -> str:
    """The correction scheme to apply, or HullError when the energies are not comparable."""
    if reference.kind == f"engine:{engine}":
        return NONE
    if reference.kind == "mp" and correction in (INCLUDED, MP2020):
        return correction
    raise HullError(f"{engine} energies (corrections: {correction}) cannot be compared with the reference "
                    f"{reference.description} ({reference.kind}); use a reference computed with {engine}")


def mp_parameters(structure) -> dict:
    """The VASP parameters MPRelaxSet would use: what MP2020 needs to correct an energy."""
    from pymatgen.io.vasp.sets import MPRelaxSet

    vasp_set = MPRelaxSet(structure)
    incar = vasp_set.incar
    hubbards = {}
    if incar.get("LDAU"):
        hubbards = {el: u for el, u in zip(vasp_set.poscar.site_symbols, incar.get("LDAUU", []), strict=False) if u}
    return {"run_type": "GGA+U" if hubbards else "GGA", "is_hubbard": bool(hubbards), "hubbards": hubbards,
            "potcar_symbols": [f"PAW_{vasp_set.potcar_functional} {s}" for s in vasp_set.potcar_symbols]}


def mp2020(entries: list) -> list:
    """Apply MP2020 corrections to each entry; an entry the scheme rejects becomes an exception."""
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    compat = MaterialsProject2020Compatibility()
    out = []
    for entry in entries:
        try:
            out.append(compat.process_entries([entry], clean=True, on_error="raise")[0])
        except Exception as exc:  # noqa: BLE001 - pymatgen raises CompatibilityError and others
            out.append(exc)
    return out


def candidates_from_relaxations(frame, with_mp_parameters: bool = False) -> list[Candidate]:
    """Candidates from relaxation records (dft/records.py columns): the engine's entry when it gave one
    (VASP), else the relaxed structure and energy (with MPRelaxSet parameters for MP2020 if asked)."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    from orchestrator.structures import parse_cif

    candidates = []
    for row in frame.itertuples(index=False):
        if row.status != "ok" or not isinstance(row.cif_relaxed, str) or not math.isfinite(row.energy):
            candidates.append(Candidate(row.target_id, int(row.sample_index), None,
                                        f"not relaxed: {row.error or 'no energy'}"))
            continue
        try:
            if isinstance(getattr(row, "entry", None), str):  # DFT: the engine's own entry and parameters
                entry = ComputedStructureEntry.from_dict(json.loads(row.entry))
                candidates.append(Candidate(row.target_id, int(row.sample_index), entry))
                continue
            structure = parse_cif(row.cif_relaxed)
            parameters = mp_parameters(structure) if with_mp_parameters else {}
            entry = ComputedStructureEntry(structure, float(row.energy), parameters=parameters,
                                           entry_id=f"{row.target_id}.{row.sample_index}")
            candidates.append(Candidate(row.target_id, int(row.sample_index), entry))
        except Exception as exc:  # noqa: BLE001 - one unusable structure is one error row
            candidates.append(Candidate(row.target_id, int(row.sample_index), None, short_error(exc)))
    return candidates


def above_hull(candidates: list[Candidate], reference, engine: str, correction: str):
    """One row per candidate: e_above_hull and formation energy (eV/atom), or the error."""
    import pandas as pd

    scheme = scheme_for(engine, correction, reference)
    entries = [c.entry for c in candidates if c.entry is not None]
    corrected = iter(mp2020(entries) if scheme == MP2020 else entries)
    rows = []
    for candidate in candidates:
        row = dict.fromkeys(COLUMNS)
        row.update(target_id=candidate.target_id, sample_index=candidate.sample_index, engine=engine,
                   e_above_hull=math.nan, e_form=math.nan, reference=reference.description,
                   scheme=SCHEMES[scheme], hull_error=candidate.error)
        if candidate.entry is not None:
            entry = next(corrected)
            if isinstance(entry, Exception):
                row["hull_error"] = f"{SCHEMES[scheme]}: {short_error(entry)}"
            else:
                row.update(_against(entry, reference))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _against(entry, reference) -> dict:
    elements = frozenset(el.symbol for el in entry.composition.elements)
    try:
        diagram = reference.phase_diagram(elements)
        decomposition, e_above = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        parts = " + ".join(sorted(f"{e.composition.reduced_formula}" for e in decomposition))
        return {"e_above_hull": float(e_above), "e_form": float(diagram.get_form_energy_per_atom(entry)),
                "decomposition": parts}
    except GencspError as exc:
        return {"hull_error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a degenerate diagram spoils one row, not the table
        return {"hull_error": short_error(exc)}
