"""What `gencsp data show` prints: counts, elements, atoms per cell, space groups."""

from __future__ import annotations

from collections import Counter

CRYSTAL_SYSTEMS = (
    (2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
    (167, "trigonal"), (194, "hexagonal"), (230, "cubic"),
)


def crystal_system(space_group: int) -> str:
    return next(name for last, name in CRYSTAL_SYSTEMS if space_group <= last)


def summarize(frame, symprec: float = 0.1, progress: bool = True) -> dict:
    """Statistics of a split's structures (space groups from spglib at `symprec`)."""
    import numpy as np
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from rich.progress import track

    from .structures import StructureError, parse_cif

    elements: Counter = Counter()
    groups: Counter = Counter()
    atoms, unreadable = [], 0
    for cif in track(frame["cif"], description="reading structures", disable=not progress, transient=True):
        try:
            structure = parse_cif(cif, seconds=None)
        except StructureError:
            unreadable += 1
            continue
        atoms.append(len(structure))
        elements.update({el.symbol for el in structure.composition.elements})
        try:
            groups[SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number()] += 1
        except Exception:  # noqa: BLE001 - spglib gives up on some cells
            groups[0] += 1
    counts = np.array(atoms) if atoms else np.zeros(1)
    systems: Counter = Counter(crystal_system(g) if g else "unknown" for g in groups.elements())
    return {
        "rows": len(frame),
        "unreadable": unreadable,
        "elements": len(elements),
        "element_counts": dict(elements.most_common()),
        "atoms_per_cell": {"min": int(counts.min()), "median": float(np.median(counts)),
                           "mean": float(counts.mean()), "max": int(counts.max())},
        "space_groups": {str(g): n for g, n in groups.most_common()},
        "distinct_space_groups": len([g for g in groups if g]),
        "crystal_systems": dict(systems.most_common()),
        "symprec": symprec,
        "property_columns": [c for c in frame.columns if c not in ("material_id", "cif")],
    }
