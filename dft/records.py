"""One relaxation result per structure, the same columns whatever the engine (MLIP, VASP, GPAW).

Energies are per atom in eV; `energy` is the total of the final structure. A
structure that could not be relaxed is a row with status `failed` and its error:
it is never dropped, because every requested sample counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

OK, FAILED = "ok", "failed"


@dataclass
class RelaxRecord:
    target_id: str
    sample_index: int
    engine: str
    status: str = FAILED
    error: str | None = None
    formula: str | None = None
    num_atoms: int | None = None
    e_initial: float = math.nan  # eV/atom, before the first step
    e_final: float = math.nan  # eV/atom, relaxed
    energy: float = math.nan  # eV, relaxed cell
    steps: int = 0
    converged: bool = False
    rmsd: float = math.nan  # StructureMatcher RMS between initial and relaxed (see relax_rmsd)
    seconds: float = 0.0
    cif_relaxed: str | None = None
    entry: str | None = None  # JSON of a pymatgen ComputedStructureEntry with the engine's parameters (DFT)

    def row(self) -> dict:
        return asdict(self)


COLUMNS = tuple(f.name for f in fields(RelaxRecord))
KEY = ("target_id", "sample_index")


def frame(records):
    import pandas as pd

    rows = [r.row() if isinstance(r, RelaxRecord) else r for r in records]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def relax_rmsd(initial, relaxed) -> float:
    """How far relaxation moved a structure: pymatgen StructureMatcher RMS distance.

    Normalised by (V/n)^(1/3) as pymatgen does, after scaling both cells to the same
    volume (so pure isotropic strain costs nothing); NaN when the matcher sees two
    different structures (default tolerances ltol 0.2, stol 0.3, angle_tol 5).
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(primitive_cell=False, attempt_supercell=False)
    found = matcher.get_rms_dist(initial, relaxed)
    return math.nan if found is None else float(found[0])


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def dft_record(target_id: str, sample_index: int, engine: str, initial, final, e_initial: float, energy: float,
               steps: int, converged: bool, seconds: float, entry=None) -> RelaxRecord:
    """A finished DFT relaxation as a record (total energies in eV in, per atom in the record)."""
    import json

    from orchestrator.structures import cif_text

    n = len(final)
    record = RelaxRecord(target_id, sample_index, engine, status=OK, formula=final.composition.reduced_formula,
                         num_atoms=n, e_initial=e_initial / n, e_final=energy / n, energy=energy, steps=steps,
                         converged=converged, seconds=seconds, cif_relaxed=cif_text(final),
                         entry=json.dumps(entry.as_dict()) if entry is not None else None)
    try:
        record.rmsd = relax_rmsd(initial, final)
    except Exception as exc:  # noqa: BLE001 - the energy stands even if the matcher fails
        record.error = f"rmsd: {short_error(exc)}"
    return record
