"""The `mini` dataset: structures that ship inside pymatgen, plus simple substitutions.

Needs no network, so `make bench` and the tests run anywhere. Substituted
variants scale the cell by the cube of the ratio of atomic radii so that
bond lengths stay plausible; they are prototypes, not relaxed materials.
"""

from __future__ import annotations

from pathlib import Path

# (pymatgen structure file, substitution, split). Order is the row order.
MINI = (
    ("SrTiO3", {}, "test"),
    ("CsCl", {}, "test"),
    ("Li2O", {}, "test"),
    ("Si", {}, "test"),
    ("VO2", {}, "test"),
    ("SrTiO3", {"Sr": "Ba"}, "test"),
    ("BaNiO3", {}, "val"),
    ("CsCl", {"Cl": "Br"}, "val"),
    ("Li2O", {"Li": "Na"}, "val"),
    ("Si", {"Si": "Ge"}, "val"),
    ("Graphite", {}, "val"),
    ("SrTiO3", {"Sr": "Ca"}, "val"),
    ("K2O2", {}, "train"),
    ("La2CoO4F", {}, "train"),
    ("Li2O2", {}, "train"),
    ("LiFePO4", {}, "train"),
    ("NaFePO4", {}, "train"),
    ("Pb2TiZrO6", {}, "train"),
    ("SiO2", {}, "train"),
    ("Sn", {}, "train"),
    ("TiO2", {}, "train"),
    ("TlBiSe2", {}, "train"),
    ("CsCl", {"Cs": "Rb"}, "train"),
    ("Li2O", {"O": "S"}, "train"),
    ("SrTiO3", {"Ti": "Zr"}, "train"),
    ("VO2", {"V": "Nb"}, "train"),
)


def _load(name: str):
    """A pymatgen test structure as plain elements, like the benchmark CSVs."""
    from pymatgen.core import Structure
    from pymatgen.util.testing import PymatgenTest

    structure = PymatgenTest.get_structure(name)
    structure.remove_oxidation_states()
    return Structure(structure.lattice, structure.species, structure.frac_coords)


def _substitute(structure, mapping: dict[str, str]):
    from pymatgen.core import Element

    if not mapping:
        return structure.copy()
    new = structure.copy()
    old_radius = sum(Element(el).atomic_radius * n for el, n in new.composition.get_el_amt_dict().items())
    new.replace_species(mapping)
    new_radius = sum(Element(el).atomic_radius * n for el, n in new.composition.get_el_amt_dict().items())
    new.scale_lattice(new.volume * float(new_radius / old_radius) ** 3)
    return new


def rows() -> list[dict]:
    """One row per structure: material_id, cif, formula, split."""
    from .structures import cif_text

    out = []
    for number, (name, mapping, split) in enumerate(MINI):
        structure = _substitute(_load(name), mapping)
        formula = structure.composition.reduced_formula
        out.append({"material_id": f"mini-{number:02d}-{formula}", "cif": cif_text(structure),
                    "formula": formula, "split": split})
    return out


def build_mini(folder: Path) -> None:
    """Write train/val/test CSVs in the CDVAE layout (unnamed index column first)."""
    import pandas as pd

    from .atomic import atomic_open

    frame = pd.DataFrame(rows())
    for split, part in frame.groupby("split"):
        with atomic_open(Path(folder) / f"{split}.csv", "w") as out:
            part.drop(columns="split").reset_index(drop=True).to_csv(out)
