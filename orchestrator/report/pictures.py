"""A picture of a crystal's cell, drawn offline with ASE and matplotlib (no viewer, no network)."""

from __future__ import annotations

ROTATION = "-70x,-20y,0z"  # a slightly tilted view: the three cell axes stay distinguishable
SIZE_INCHES = (2.6, 2.6)


def _atoms(cif: str):
    from pymatgen.io.ase import AseAtomsAdaptor

    from ..structures import parse_cif

    return AseAtomsAdaptor.get_atoms(parse_cif(cif))


def cell_figure(cif: str, title: str):
    """A matplotlib Figure of the cell in `cif`: atoms (Jmol colours, covalent radii), cell edges, legend."""
    from ase.data import covalent_radii
    from ase.data.colors import jmol_colors
    from ase.visualize.plot import plot_atoms
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    atoms = _atoms(cif)
    figure = Figure(figsize=SIZE_INCHES, dpi=100, layout="constrained")
    ax = figure.add_subplot()
    radii = [0.6 * covalent_radii[z] for z in atoms.numbers]
    plot_atoms(atoms, ax, rotation=ROTATION, radii=radii, show_unit_cell=2)
    ax.set_title(title, fontsize=9)
    seen = sorted(set(zip(atoms.get_chemical_symbols(), atoms.numbers, strict=True)), key=lambda s: s[1])
    handles = [Line2D([], [], marker="o", linestyle="", markersize=7, markerfacecolor=jmol_colors[z],
                      markeredgecolor="black", label=symbol) for symbol, z in seen]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=min(len(handles), 5),
              fontsize=7, frameon=False, handletextpad=0.1, columnspacing=0.8)
    return figure
