"""Elemental reference structures for hulls computed with one engine.

A hull needs every element's own energy, computed the same way as the compounds.
Without a database of elemental ground states here, each element is tried in a few
prototypes (fcc, bcc, hcp, diamond, simple cubic; a dimer in a box for the diatomic
gases) and the lowest relaxed energy per atom is its reference. Starting cells put
nearest neighbours at twice the element's atomic radius; the relaxation does the rest.
A dimer relaxes its positions only: relaxing the box would collapse the vacuum.

`ground` picks the one prototype closest to each element's ground state where that is a
simple lattice (the cheap choice for DFT); other elements get every prototype. These
are references of the same engine, not the real phases: α-Mn, Ga, B, P, S... have
complex ground states that the prototypes only bound from above.
"""

from __future__ import annotations

import math

PROTOTYPES = ("fcc", "bcc", "hcp", "diamond", "sc", "dimer")
DIATOMIC = frozenset({"H", "N", "O", "F", "Cl", "Br", "I"})
GROUND = {
    "bcc": "Li Na K Rb Cs Ba V Cr Fe Nb Mo Ta W Eu",
    "fcc": "Al Ca Sr Ni Cu Rh Pd Ag Ir Pt Au Pb Ce Yb Th Ne Ar Kr Xe Ac",
    "hcp": "Be Mg Sc Ti Co Zn Y Zr Tc Ru Cd Hf Re Os Tl La Pr Nd Sm Gd Tb Dy Ho Er Tm Lu",
    "diamond": "C Si Ge Sn",
}
GROUND_OF = {el: kind for kind, names in GROUND.items() for el in names.split()}
DIMER_BOX = 8.0  # A: periodic images of the dimer 6-7 A apart, past the cutoffs of the MLIPs in use


def bond_length(element: str) -> float:
    from pymatgen.core import Element

    el = Element(element)
    radius = el.atomic_radius or el.atomic_radius_calculated or 1.5
    return 2.0 * float(radius)


def prototype(element: str, kind: str):
    """One starting structure of `element` in the prototype `kind`."""
    from pymatgen.core import Lattice, Structure

    d = bond_length(element)
    if kind == "fcc":
        return Structure.from_spacegroup("Fm-3m", Lattice.cubic(d * math.sqrt(2)), [element],
                                         [[0, 0, 0]]).get_primitive_structure()
    if kind == "bcc":
        return Structure.from_spacegroup("Im-3m", Lattice.cubic(2 * d / math.sqrt(3)), [element],
                                         [[0, 0, 0]]).get_primitive_structure()
    if kind == "hcp":
        return Structure.from_spacegroup("P6_3/mmc", Lattice.hexagonal(d, d * math.sqrt(8 / 3)), [element],
                                         [[1 / 3, 2 / 3, 0.25]])
    if kind == "diamond":
        return Structure.from_spacegroup("Fd-3m", Lattice.cubic(4 * d / math.sqrt(3)), [element],
                                         [[0, 0, 0]]).get_primitive_structure()
    if kind == "sc":
        return Structure(Lattice.cubic(d), [element], [[0, 0, 0]])
    if kind == "dimer":
        half = 0.5 * d / DIMER_BOX
        return Structure(Lattice.cubic(DIMER_BOX), [element, element], [[0.5 - half, 0.5, 0.5], [0.5 + half, 0.5, 0.5]])
    raise ValueError(f"unknown prototype {kind!r}; choose from {', '.join(PROTOTYPES)}")


def prototypes_for(element: str, kinds: tuple[str, ...] = PROTOTYPES) -> dict[str, object]:
    """The prototypes tried for `element` (`kinds` may be ("ground",)): dimers only for diatomic gases."""
    if tuple(kinds) == ("ground",):
        if element in DIATOMIC:
            kinds = ("dimer",)
        elif element in GROUND_OF:
            kinds = (GROUND_OF[element],)
        else:
            kinds = PROTOTYPES
    return {kind: prototype(element, kind) for kind in kinds if kind != "dimer" or element in DIATOMIC}


def relaxes_cell(key: str) -> bool:
    """Reference keys `element:<El>:<kind>`: a molecule in a box keeps its box."""
    return not key.endswith(":dimer")
