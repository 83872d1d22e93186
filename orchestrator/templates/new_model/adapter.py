"""{name}: a new gencsp model (scaffolded by `gencsp new-model`).

Replace `make_structure` with a call to your model. Everything else — reading the
request, timing, writing CIFs and the manifest atomically, recording failures —
is done by gencsp_helper. Keep this file importable by your image's Python.
"""

import math
import random

import gencsp_helper as g

MODEL = {"name": "{name}", "upstream": {"repo": "https://example.org/your/model", "commit": "0000000"}}


def p1_cif(lengths, species, frac_coords, title="gencsp"):
    """A P1 CIF for a cubic cell (standard library only)."""
    a = lengths
    lines = ["data_" + title, "_symmetry_space_group_name_H-M 'P 1'", "_symmetry_Int_Tables_number 1",
             "_cell_length_a {:.6f}".format(a), "_cell_length_b {:.6f}".format(a), "_cell_length_c {:.6f}".format(a),
             "_cell_angle_alpha 90", "_cell_angle_beta 90", "_cell_angle_gamma 90",
             "loop_", " _symmetry_equiv_pos_as_xyz", "  'x, y, z'",
             "loop_", " _atom_site_type_symbol", " _atom_site_label", " _atom_site_fract_x",
             " _atom_site_fract_y", " _atom_site_fract_z", " _atom_site_occupancy"]
    for i, (element, (x, y, z)) in enumerate(zip(species, frac_coords)):
        lines.append("  {0} {0}{1} {2:.6f} {3:.6f} {4:.6f} 1".format(element, i, x, y, z))
    return "\n".join(lines) + "\n"


def make_structure(target, rng):
    """Placeholder model: the target's atoms at random positions in a cube of 12 A^3 per atom."""
    species = [el for el, n in sorted(target["composition"].items()) for _ in range(n)]
    edge = math.pow(12.0 * len(species), 1.0 / 3.0)
    coords = [(rng.random(), rng.random(), rng.random()) for _ in species]
    return p1_cif(edge, species, coords, title=target["id"])


def sample(session):
    for target, index in session.requested():
        with session.slot(target, index) as slot:
            slot.cif(make_structure(target, random.Random(session.seed_for(target, index))))


if __name__ == "__main__":
    g.main(sample, model=MODEL)
