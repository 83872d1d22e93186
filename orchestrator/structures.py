"""Reading and sanity-checking crystal structures from CIF text.

Every rejection carries a short, stable reason code (the `reason` column of
`structures.parquet`) and a human message.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Iterator

DEFAULT_PARSE_SECONDS = 10.0
DEFAULT_MAX_ATOMS = 1000
# CDVAE treats a cell below 0.1 A^3 as not constructed; no metric can use one.
MIN_VOLUME = 0.1


class StructureError(ValueError):
    """A structure that cannot be used, with a reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Deadline:
    """What time_limit yields: whether the limit was reached inside the block."""

    expired = False


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[Deadline]:
    """Raise StructureError('timeout') if the block runs longer than `seconds`.

    Uses SIGALRM, so it only bounds code running in a main thread; elsewhere it
    is a no-op (parse_pool.py bounds a parse in any thread). Code that catches
    the exception and goes on (pymatgen does, per CIF data block) is interrupted
    again every 50 ms until the block ends, and `Deadline.expired` tells the caller.
    """
    deadline = Deadline()
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield deadline
        return

    def _expire(signum, frame):
        deadline.expired = True
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        raise StructureError("timeout", f"parsing took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_cif(text: str, seconds: float | None = DEFAULT_PARSE_SECONDS):
    """Parse CIF text as CDVAE does (`Structure.from_str(..., fmt='cif')`), bounded in time (main thread)."""
    from pymatgen.core import Structure

    if not text or not text.strip():
        raise StructureError("empty", "empty CIF")
    deadline = Deadline()
    try:
        with time_limit(seconds) as deadline, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except StructureError:
        raise
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on bad CIFs
        if deadline.expired:  # pymatgen turned the alarm into its own error
            raise StructureError("timeout", f"parsing took more than {seconds:g} s") from exc
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StructureError("parse_error", f"unreadable CIF: {message[:300]}") from exc
    if deadline.expired:  # a block was cut short and pymatgen returned the others
        raise StructureError("timeout", f"parsing took more than {seconds:g} s")
    return structure


def check_structure(structure, max_atoms: int = DEFAULT_MAX_ATOMS) -> None:
    """Reject structures no metric can use. Physical plausibility is the metrics' job."""
    import numpy as np
    from pymatgen.core import DummySpecies

    n = len(structure)
    if n == 0:
        raise StructureError("no_atoms", "the cell holds no atoms")
    if n > max_atoms:
        raise StructureError("too_many_atoms", f"{n} atoms, more than the limit of {max_atoms}")
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    coords = np.asarray(structure.frac_coords, dtype=float)
    if not (np.isfinite(matrix).all() and np.isfinite(coords).all()):
        raise StructureError("non_finite", "lattice or coordinates contain NaN or infinity")
    if np.linalg.det(matrix) <= 0:
        raise StructureError("bad_lattice", "left-handed or degenerate cell (a negative lattice length?)")
    volume = float(structure.volume)
    if volume < MIN_VOLUME:
        raise StructureError("tiny_volume", f"cell volume {volume:.3g} A^3 is below {MIN_VOLUME} A^3")
    if not structure.is_ordered:
        raise StructureError("disordered", "partially occupied sites (ordered crystals expected)")
    for specie in structure.composition:
        if isinstance(specie, DummySpecies):
            raise StructureError("unknown_element", f"{specie} is not a chemical element")


def read_structure(text: str, seconds: float | None = DEFAULT_PARSE_SECONDS, max_atoms: int = DEFAULT_MAX_ATOMS):
    """parse_cif then check_structure."""
    structure = parse_cif(text, seconds)
    check_structure(structure, max_atoms)
    return structure


def cif_text(structure) -> str:
    """P1 CIF as written by pymatgen, the format of the benchmark CSVs."""
    from pymatgen.io.cif import CifWriter

    structure = structure.copy()
    structure.relabel_sites()
    return str(CifWriter(structure))
