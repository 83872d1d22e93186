"""The files diffusion-atoms reads, made from gencsp's splits (what its data.zip holds; a mirror lacks it).

main.py reads, from its config's `data` section:
  space_groups/<number>  one operation file per space group (sampling and training), parsed by
                         datasets/symmetries.py::get_operations: line 1 ends with the quoted symbol
                         (its first letter is the lattice type), line 2 with the group number, line 4 is
                         `space_group_operations:`, then 5 lines per operation (`rotation`, its three
                         rows, `translation`) until a line without `rotation` (phonopy's layout);
  data, data_test        folders of CIFs (training only), read with jarvis `Atoms.from_cif`;
  sg_index               JSON: CIF file name -> the name of its operation file (the group number).
The operations act on fractional coordinates of the primitive cell upstream derives from the standard
conventional cell with functions/lattice.py::c_to_p_matrix(letter) (its rows: the primitive vectors in
the conventional basis); datasets/__init__.py::AtomsData checks every CIF against them (1e-4) and
converts back with the inverse matrix. So the CIFs are that primitive cell, with idealised positions.
Space groups 1-15 are skipped by AtomsData (monoclinic/triclinic): no files are made for them.

Runs in the image (the build writes space_groups/, `train` writes the CIFs) and on the host in tests.
No annotations and nothing past Python 3.9 (the cpu image).
"""

import functools
import json
import os
import sys

import numpy as np

GROUPS = range(16, 231)  # what upstream trains and samples (datasets/__init__.py skips <= 15)
TOLERANCE = 1e-4  # AtomsData's reduce_atoms(check_consistency=True) tolerance on fractional coordinates
SYMPREC = 0.1  # the benchmark's truth symmetry (orchestrator/targets.py)
ANGLE_TOLERANCE = 5.0  # pymatgen's SpacegroupAnalyzer default, as the benchmark uses it

# Upstream's primitive vectors (rows) in the conventional basis per lattice letter, orthorhombic and up
# (functions/lattice.py::c_to_p_matrix; the build checks these against it). Its 'A' rows (c, (a+b)/2,
# (a-b)/2) are not lattice vectors of an A-centred cell, so groups 38-41 are written in their C-centred
# setting instead (axes b, c, a), where the 'C' rows are.
C_TO_P = {
    "P": np.eye(3),
    "C": np.array([[0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]),
    "I": np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]),
    "F": np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]),
    "R": np.array([[-1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [-1.0, -2.0, 1.0]]) / 3.0,
}
A_TO_C_SETTING = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # new axes (b, c, a)
A_CENTRED = range(38, 42)


class Unsupported(ValueError):
    """A structure upstream cannot read: its group is skipped, or its cell is not representable."""


# --- space groups --------------------------------------------------------------------------------


def _get(dataset, key):
    """A spglib dataset field (a dict before spglib 2.5, an object after)."""
    return dataset[key] if isinstance(dataset, dict) else getattr(dataset, key)


@functools.cache
def hall_numbers(number):
    """Hall numbers (settings) of a space group, spglib's standard one first."""
    import spglib

    return tuple(h for h in range(1, 531) if _get(spglib.get_spacegroup_type(h), "number") == number)


def lattice_letter(number):
    """The letter get_operations returns for our file of this group (C for the A-centred 38-41)."""
    import spglib

    symbol = _get(spglib.get_spacegroup_type(hall_numbers(number)[0]), "international_short")
    return "C" if number in A_CENTRED else symbol[0]


def basis_change(number):
    """Rows: the primitive vectors upstream works in, in the basis of spglib's standard conventional cell."""
    setting = A_TO_C_SETTING if number in A_CENTRED else np.eye(3)
    return C_TO_P[lattice_letter(number)] @ setting


def transform_operations(rotations, translations, basis):
    """Operations (R, t) on column fractional coordinates, expressed in the basis whose rows are `basis`."""
    forward = basis.T  # x_old = basis.T @ x_new
    backward = np.linalg.inv(forward)
    seen, operations = set(), []
    for rotation, translation in zip(rotations, translations):  # noqa: B905 - no strict= before Python 3.10
        new_rotation = backward @ rotation @ forward
        rounded = np.rint(new_rotation)
        if np.abs(new_rotation - rounded).max() > 1e-6:
            raise ValueError("a rotation is not integral in the primitive basis (wrong centring?)")
        new_translation = np.round((backward @ translation) % 1.0, 10) % 1.0
        key = (tuple(rounded.astype(int).ravel()), tuple(np.round(new_translation, 6) % 1.0))
        if key not in seen:
            seen.add(key)
            operations.append((rounded.astype(int), new_translation))
    return operations


@functools.cache
def operations(number):
    """The group's operations in upstream's primitive basis, identity first (graph.py relies on it)."""
    import spglib

    symmetry = spglib.get_symmetry_from_database(hall_numbers(number)[0])
    found = transform_operations(symmetry["rotations"], symmetry["translations"], basis_change(number))
    identity = [i for i, (r, t) in enumerate(found) if (r == np.eye(3, dtype=int)).all() and not t.any()]
    if identity != [0]:
        raise ValueError(f"space group {number}: the identity is not the first operation")
    return found


def setting_symbol(number, found):
    """The Hermann-Mauguin symbol of the setting the operations are in (38-41: a C-centred one)."""
    import spglib

    if number not in A_CENTRED:
        return _get(spglib.get_spacegroup_type(hall_numbers(number)[0]), "international_short")
    want = _operation_set(found)
    for hall in hall_numbers(number):
        symmetry = spglib.get_symmetry_from_database(hall)
        ops = transform_operations(symmetry["rotations"], symmetry["translations"], C_TO_P["C"])
        if _operation_set(ops) == want:
            return _get(spglib.get_spacegroup_type(hall), "international_short")
    raise ValueError(f"space group {number}: no C-centred setting matches")


def _operation_set(found):
    return {(tuple(r.ravel()), tuple(np.round(t, 6) % 1.0)) for r, t in found}


def operation_file(number):
    """The text of `space_groups/<number>` (phonopy's symmetry layout, as get_operations reads it)."""
    import spglib

    found = operations(number)
    point_group = _get(spglib.get_spacegroup_type(hall_numbers(number)[0]), "pointgroup_international")
    lines = [f"generator: gencsp upstream_data.py (spglib {spglib.__version__})",
             f"space_group_type: '{setting_symbol(number, found)}'", f"space_group_number: {number}",
             f"point_group_type: '{point_group}'", "space_group_operations:"]
    for k, (rotation, translation) in enumerate(found, start=1):
        lines.append(f"- rotation: # {k}")
        lines += ["  - [ {:2d}, {:2d}, {:2d} ]".format(*row) for row in rotation]
        lines.append("  translation: [ {:.10f}, {:.10f}, {:.10f} ]".format(*translation))
    return "\n".join(lines) + "\n"


def write_space_groups(folder):
    os.makedirs(folder, exist_ok=True)
    for number in GROUPS:
        _atomic_write(os.path.join(folder, str(number)), operation_file(number))
    return len(GROUPS)


# --- structures ---------------------------------------------------------------------------------


def primitive_cell(structure, symprec=SYMPREC, angle_tolerance=ANGLE_TOLERANCE):
    """(group, lattice rows, species, fractional coordinates) of a structure in upstream's primitive cell.

    Idealised (symmetrised) positions of spglib's standard cell, moved to the primitive basis of
    `basis_change`; Unsupported when the group is <= 15 or the cell does not fit the operations.
    """
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
    if dataset is None:
        raise Unsupported(f"spglib finds no symmetry (symprec {symprec})")
    number = int(_get(dataset, "number"))
    if number not in GROUPS:
        raise Unsupported(f"space group {number}: diffusion-atoms skips groups 1-15")
    if int(_get(dataset, "hall_number")) != hall_numbers(number)[0]:
        raise Unsupported(f"space group {number}: spglib's cell is not in the standard setting")
    basis = basis_change(number)
    lattice = basis @ np.asarray(_get(dataset, "std_lattice"))
    frac = np.asarray(_get(dataset, "std_positions")) @ np.linalg.inv(basis)
    frac = np.round(frac % 1.0, 10) % 1.0
    numbers = np.asarray(_get(dataset, "std_types"))
    keep = []
    for i in range(len(frac)):
        if not any(numbers[i] == numbers[j] and _distance(frac[i], frac[j]) < TOLERANCE for j in keep):
            keep.append(i)
    expected = len(frac) * abs(np.linalg.det(basis))
    if abs(len(keep) - expected) > 1e-6:
        raise Unsupported(f"space group {number}: {len(keep)} atoms in the primitive cell, expected {expected:g}")
    frac, numbers = frac[keep], numbers[keep]
    check_symmetric(frac, numbers, operations(number), number)
    return number, lattice, [int(z) for z in numbers], frac


def _distance(a, b):
    diff = (np.asarray(a) - np.asarray(b)) % 1.0
    return float(np.linalg.norm(np.minimum(diff, 1.0 - diff)))


def check_symmetric(frac, numbers, found, number):
    """Every image of every atom is an atom of the same element (what upstream assumes, checked per element)."""
    for rotation, translation in found:
        images = (frac @ rotation.T + translation) % 1.0
        for i, image in enumerate(images):
            diff = (frac - image) % 1.0
            near = np.linalg.norm(np.minimum(diff, 1.0 - diff), axis=1) < TOLERANCE
            if not (near & (np.asarray(numbers) == numbers[i])).any():
                raise Unsupported(f"space group {number}: the idealised cell is not invariant under its operations")


def cif_text(lattice, numbers, frac):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(Structure(Lattice(lattice), numbers, frac)))


# --- splits -----------------------------------------------------------------------------------


def safe_name(material_id):
    text = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(material_id))
    return (text or "row") + ".cif"


def read_split(path):
    """(material_id, cif) rows of a gencsp split CSV (index column first, as the datasets are)."""
    import pandas as pd

    frame = pd.read_csv(path, index_col=0)
    for column in ("material_id", "cif"):
        if column not in frame.columns:
            raise ValueError(f"{path}: no column {column!r} (columns: {', '.join(frame.columns)})")
    return list(zip(frame["material_id"], frame["cif"]))  # noqa: B905 - no strict= before Python 3.10


def write_split(path, folder, index, symprec=SYMPREC):
    """CIFs of one split into `folder`, their groups into `index`; returns what was written and skipped."""
    from pymatgen.core import Structure

    os.makedirs(folder, exist_ok=True)
    written, skipped = 0, {}
    for material_id, text in read_split(path):
        name = safe_name(material_id)
        try:
            structure = Structure.from_str(text, fmt="cif")
            number, lattice, numbers, frac = primitive_cell(structure, symprec)
        except Exception as exc:  # noqa: BLE001 - one unreadable row is a skipped row, named in the summary
            reason = str(exc) if isinstance(exc, Unsupported) else f"{type(exc).__name__}: {exc}"
            skipped.setdefault(reason, []).append(str(material_id))
            continue
        if name in index:
            raise ValueError(f"{path}: two rows map to the file name {name}")
        _atomic_write(os.path.join(folder, name), cif_text(lattice, numbers, frac))
        index[name] = number
        written += 1
    return {"rows": written + sum(len(v) for v in skipped.values()), "written": written,
            "skipped": {reason: {"count": len(ids), "material_ids": ids[:20]} for reason, ids in skipped.items()}}


def write_training_data(train_csv, test_csv, root, space_groups, symprec=SYMPREC):
    """`root/{train,test}/*.cif` and `root/sg_index.json`; returns the data section of a config and a summary."""
    index = {}
    summary = {"symprec": symprec,
               "train": write_split(train_csv, os.path.join(root, "train"), index, symprec),
               "test": write_split(test_csv, os.path.join(root, "test"), index, symprec)}
    _atomic_write(os.path.join(root, "sg_index.json"), json.dumps(index, indent=0, sort_keys=True))
    section = {"data": os.path.join(root, "train"), "data_test": os.path.join(root, "test"),
               "space_groups": space_groups, "sg_index": os.path.join(root, "sg_index.json")}
    return section, summary


def _atomic_write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


# --- checks against the upstream code (in the image) ---------------------------------------------


def check_with_upstream(folder, upstream):
    """Read every operation file back with upstream's get_operations; compare with ours and its matrices."""
    sys.path.insert(0, upstream)
    from datasets.symmetries import get_operations, inverse_operations_index
    from functions.lattice import c_to_p_matrix, get_lattice_system

    for number in GROUPS:
        parsed, group, letter = get_operations(os.path.join(folder, str(number)))
        ours = operations(number)
        if group != number or letter != lattice_letter(number) or len(parsed) != len(ours):
            raise AssertionError(f"space group {number}: upstream read ({group}, {letter}, {len(parsed)} operations)")
        for (rotation, translation), (r, t) in zip(parsed, ours):  # noqa: B905 - lengths compared above
            if not (np.allclose(rotation, r) and np.allclose(translation, t, atol=1e-9)):
                raise AssertionError(f"space group {number}: an operation reads back differently")
        inverse_operations_index(parsed)  # raises unless every operation has its inverse: a group
        upstream_matrix = np.asarray(c_to_p_matrix(letter, get_lattice_system(number)))
        if not np.allclose(upstream_matrix, C_TO_P[letter]):
            raise AssertionError(f"letter {letter}: upstream's c_to_p_matrix differs from ours")
    return len(GROUPS)


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    groups = sub.add_parser("space-groups", help="write the operation files of groups 16-230")
    groups.add_argument("folder")
    groups.add_argument("--check-with-upstream", action="store_true",
                        help="read them back with upstream's get_operations ($GENCSP_UPSTREAM)")
    args = parser.parse_args(argv)
    count = write_space_groups(args.folder)
    print(f"gencsp: wrote {count} operation files to {args.folder}")
    if args.check_with_upstream:
        check_with_upstream(args.folder, os.environ.get("GENCSP_UPSTREAM", "/opt/diffusion-atoms"))
        print(f"gencsp: upstream get_operations read all {count} back; each is a group; c_to_p matrices agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
