"""order_params.py gives pymatgen's LocalStructOrderParams values bit for bit, and the fingerprints
built from it equal matminer's CrystalNNFingerprint."""

import functools
import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
from pymatgen.core import Structure

from conftest import MIRROR
from orchestrator.metrics import crystalnn, order_params

SLICES = {"perov_5": 150, "carbon_24": 20}


def pymatgen_values(op_objects, centre, neighbours):
    """What matminer asks pymatgen for: [centre] + neighbours, site 0, neighbours 1..n."""
    from pymatgen.core import Site

    sites = [Site("C", centre), *(Site("C", n) for n in neighbours)]
    indices = list(range(1, len(neighbours) + 1))
    return [op.get_order_parameters(sites, 0, indices_neighs=indices)[0] for op in op_objects]


def fast_values(op_objects, centre, neighbours):
    motifs = [(op._types[0], op._params[0]) for op in op_objects]
    return order_params.order_parameters(centre, neighbours, motifs)


def identical(ours, theirs) -> bool:
    """Same None-ness and the same float, bit for bit (sign of zero aside: matminer maps it to 0)."""
    return all((a is None and b is None) or (a is not None and b is not None and a == b)
               for a, b in zip(ours, theirs, strict=True))


@functools.cache
def structures(name: str) -> list:
    texts = pd.read_csv(MIRROR / name / "val.csv")["cif"].iloc[:SLICES[name]]
    return [Structure.from_str(text, fmt="cif") for text in texts]


@functools.cache
def neighbour_sets(name: str) -> list:
    """(cn, centre coords, neighbour coords) of every site and every CN with a nonzero CrystalNN weight
    (from the shared tessellation, as the fingerprints get them)."""
    fingerprint = crystalnn.featurizer()
    sets = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CrystalNN's "no oxidation states" notes
        for structure in structures(name):
            with crystalnn._shared(structure, crystalnn.shared_polyhedra(structure)):
                nndata_of_sites = [fingerprint.cnn.get_nn_data(structure, i) for i in range(len(structure))]
            for i, nndata in enumerate(nndata_of_sites):
                for cn, weight in sorted(nndata.cn_weights.items()):
                    if weight:
                        neighbours = np.array([entry["site"].coords for entry in nndata.cn_nninfo[cn]])
                        sets.append((cn, structure[i].coords, neighbours))
    return sets


def all_ops() -> list:
    return [op for ops in crystalnn.featurizer().ops.values() for op in ops if op != "wt"]


def test_every_preset_type_is_reproduced():
    assert {op._types[0] for op in all_ops()} <= order_params.SUPPORTED
    assert len(all_ops()) == 37  # 61 entries minus 24 "wt"


def test_dot_products_are_numpys_1d_dot():
    """Bit-identity rests on this: pymatgen's np.inner of 3-vectors is BLAS ddot (FMA here)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5000, 3)), rng.normal(size=(5000, 3))
    assert np.array_equal(order_params._dots(a, b), [np.inner(x, y) for x, y in zip(a, b, strict=True)])
    assert np.array_equal(order_params._dots(a, a), [x.dot(x) for x in a])  # np.linalg.norm's square
    few = a[:12]
    assert np.array_equal(order_params._dots(few[:, None], few[None]), [[np.inner(x, y) for y in few] for x in few])


@pytest.mark.parametrize("name", sorted(SLICES))
def test_each_cn_s_motif_types_equal_pymatgen_on_real_neighbour_sets(name):
    ops = crystalnn.featurizer().ops
    checked = 0
    for cn, centre, neighbours in neighbour_sets(name):
        objects = [op for op in ops.get(cn, []) if op != "wt"]
        if objects:
            ours, theirs = fast_values(objects, centre, neighbours), pymatgen_values(objects, centre, neighbours)
            assert identical(ours, theirs), (name, cn, ours, theirs)
            checked += 1
    assert checked > (500 if name == "carbon_24" else 1500)


@pytest.mark.parametrize("name", sorted(SLICES))
def test_every_motif_type_equals_pymatgen_on_neighbour_sets_of_every_size(name):
    """All 37 order parameters on one real neighbour set of each size up to 9 (the larger ones, slow in
    pymatgen, meet all types in the hand-built cuboctahedron and their own types above)."""
    by_size = {}
    for _, centre, neighbours in neighbour_sets(name):
        if len(neighbours) <= 9:
            by_size.setdefault(len(neighbours), (centre, neighbours))
    assert len(by_size) >= 5
    for centre, neighbours in by_size.values():
        ours, theirs = fast_values(all_ops(), centre, neighbours), pymatgen_values(all_ops(), centre, neighbours)
        assert identical(ours, theirs), (len(neighbours), ours, theirs)


def polyhedron(name: str) -> np.ndarray:
    axes = [v for v in itertools.product((-1, 0, 1), repeat=3) if sum(map(abs, v)) == 1]
    hexagon = [(math.cos(a * math.pi / 3), math.sin(a * math.pi / 3), 0.0) for a in range(6)]
    return np.array({
        "one": [(0.0, 0.0, 1.7)],
        "collinear": [(1.1, 0.2, -0.3), (-2.2, -0.4, 0.6)],  # theta = pi
        "poles": [(0.0, 0.0, 2.0), (0.0, 0.0, -1.5), (1.5, 0.0, 0.0)],  # along +-z: phi undefined
        "coincident": [(1.0, 1.0, 0.0), (2.0, 2.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)],  # same direction
        "all_coincident": [(0.3, 0.4, 0.5), (0.6, 0.8, 1.0), (0.9, 1.2, 1.5)],
        "octahedron": axes,
        "cube": list(itertools.product((-1.0, 1.0), repeat=3)),
        "cuboctahedron": [v for v in itertools.product((-1, 0, 1), repeat=3) if sum(map(abs, v)) == 2],
        "hexagon": hexagon,
        "hex_bipyramid": [*hexagon, (0.0, 0.0, 1.0), (0.0, 0.0, -1.0)],
        "tetrahedron": [(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)],
    }[name], dtype=float)


@pytest.mark.parametrize("name", ["one", "collinear", "poles", "coincident", "all_coincident", "octahedron",
                                  "cube", "cuboctahedron", "hexagon", "hex_bipyramid", "tetrahedron"])
def test_degenerate_and_ideal_neighbour_sets(name):
    centre = np.array([0.25, -0.5, 1.0])
    neighbours = centre + polyhedron(name)
    ours, theirs = fast_values(all_ops(), centre, neighbours), pymatgen_values(all_ops(), centre, neighbours)
    assert identical(ours, theirs), (name, ours, theirs)


def test_a_neighbour_on_the_centre_is_left_to_pymatgen():
    with pytest.raises(order_params.Unsupported):
        fast_values(all_ops(), np.zeros(3), np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    structure = Structure(np.eye(3) * 5, ["C"] * 4, [[0, 0, 0], [0, 0, 0], [0.3, 0, 0], [0, 0.3, 0]])
    neighbours = [structure[1], structure[2], structure[3]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen divides by the zero distance
        ours = crystalnn._order_parameters(crystalnn.featurizer(), structure, 0, 3, neighbours)
        objects = [op for op in crystalnn.featurizer().ops[3] if op != "wt"]
        theirs = [op.get_order_parameters([structure[0], *neighbours], 0, indices_neighs=[1, 2, 3])[0]
                  for op in objects]
    assert np.array_equal(np.array(ours, dtype=float), np.array(theirs, dtype=float), equal_nan=True)


@pytest.mark.parametrize("name", sorted(SLICES))
def test_site_fingerprints_equal_matminer(name):
    """Per site: the fast fingerprints equal matminer's `featurize` on the same (shared) Voronoi cells
    bit for bit, and matminer's own per-site path to the last bit of a solid angle."""
    matminer = CrystalNNFingerprint.from_preset("ops")
    same_cells = own_path = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, structure in enumerate(structures(name)):
            fast = crystalnn.site_fingerprints(structure)
            assert fast.shape == (len(structure), 61)
            # fast_order_params=False: matminer's featurize, its order parameters from pymatgen
            same_cells = max(same_cells, float(np.abs(fast - crystalnn.site_fingerprints(
                structure, fast_order_params=False)).max()))
            if index < SLICES[name] // 6:  # matminer's own path throughout (a qhull run per site: slow)
                theirs = np.array([matminer.featurize(structure, i) for i in range(len(structure))])
                own_path = max(own_path, float(np.abs(fast - theirs).max()))
    print(f"{name}: max |fast - matminer| = {same_cells:.3g} (same cells), {own_path:.3g} (matminer's own path)")
    assert same_cells == 0.0
    assert own_path <= 1e-12  # the shared tessellation's solid angles may differ in a last bit (crystalnn.py)
