"""CrystalNN 'ops' site fingerprints (matminer), with one Voronoi tessellation per structure.

matminer's `CrystalNNFingerprint.featurize(structure, i)` asks pymatgen's CrystalNN
for the neighbours of site i, which tessellates the atoms within 7 A of that site
(`VoronoiNN.get_voronoi_polyhedra`) and keeps the cell of site i: one qhull run
per site, then a Python loop over every ridge of it. `shared_polyhedra` tessellates
the union of those spheres once per structure and hands each site its cell
(`voronoi.polyhedra` computes the very same cells from numpy arrays, without pymatgen's
neighbour objects: the default; `shared_polyhedra` stays as its reference).

Why the cells are the same: the union holds every point of the site's own
sphere plus points farther than 7 A. The cell computed from the union has all
its vertices within R of the site; a point farther than 2R cannot cut a cell
that lies inside the ball of radius R, so when R < 3.5 A the sphere alone gives
the very same cell (same faces, same neighbour images, same coordinates, which
are computed by the same pymatgen call). Any site where that is not proven (an
unbounded cell, R >= 3.5 A, a degenerate tessellation, any error) goes through
pymatgen's own per-site code. Face statistics use pymatgen's formulas with the
same numpy calls; only `np.cross` of 3-vectors is written out (bit-identical).

The order parameters (pymatgen `LocalStructOrderParams`, one object per motif
type of a coordination number) come from `order_params.py`, which computes the
angles of a neighbour set once for all its motif types and gives pymatgen's
numbers bit for bit (`_featurize` assembles matminer's 61-vector around it;
`fast_order_params=False` keeps pymatgen's own objects for comparison). On
that path, and for neighbour sets `order_params` leaves to pymatgen (a
neighbour on the centre), `gramschmidt` is memoised (`_memo_gramschmidt`
returns a copy of the first result for the same input bytes, which is exactly
what the function would compute again) and `np.linalg.norm` of a float vector
is `sqrt(x.dot(x))` behind several checks; `_numpy_with_fast_norm` gives
pymatgen's module a numpy whose `linalg.norm` does just that for plain 1-D
float64 arrays (the same two operations, so the same bits) and calls numpy's
own for anything else.

Not done, because it changes numbers: treating symmetry-equivalent sites as
equal (their fingerprints agree only to ~1e-2 at symprec 1e-2).

Differences left: qhull computes a vertex from another point set, so a solid
angle can differ in the last bit: on perov_5 test + val (5,085 structures) the
fingerprints differ from matminer's by at most 2.2e-16 and every cdvae-profile
metric is identical (benchmarks/metrics_speed.py); carbon_24 slices are
bit-identical (tests).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

SEARCH_CUTOFF = 7.0  # CrystalNN's default search_cutoff, the radius VoronoiNN tessellates


def _plain(value):
    """ruamel CommentedMaps (slow to index) -> dicts with the same values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@functools.lru_cache(maxsize=1)
def featurizer():
    """matminer's CrystalNNFingerprint 'ops' preset, order-parameter settings as plain dicts."""
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    fingerprint = CrystalNNFingerprint.from_preset("ops")
    for ops in fingerprint.ops.values():
        for op in ops:
            if op != "wt":
                op._params = _plain(op._params)
    return fingerprint


def _cross(a, b):
    """np.cross of two 3-vectors, the same products and differences, without numpy's overhead."""
    import numpy as np

    a0, a1, a2 = a.tolist()
    b0, b1, b2 = b.tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _solid_angle(center, coords) -> float:
    """pymatgen.core.local_env.solid_angle with the same arithmetic."""
    import numpy as np

    disp = [np.subtract(c, center) for c in coords]
    r_norm = [np.linalg.norm(d) for d in disp]
    angle = 0
    for ii in range(1, len(disp) - 1):
        jj = ii + 1
        tp = np.abs(np.dot(disp[0], _cross(disp[ii], disp[jj])))
        de = (r_norm[0] * r_norm[ii] * r_norm[jj] + r_norm[jj] * np.dot(disp[0], disp[ii])
              + r_norm[ii] * np.dot(disp[0], disp[jj]) + r_norm[0] * np.dot(disp[ii], disp[jj]))
        part = (0.5 * math.pi if tp > 0 else -0.5 * math.pi) if de == 0 else np.arctan(tp / de)
        angle += (part if part > 0 else part + math.pi) * 2
    return angle


def _vol_tetra(vt1, vt2, vt3, vt4):
    import numpy as np

    return np.abs(np.dot(vt1 - vt4, _cross(vt2 - vt4, vt3 - vt4))) / 6


def _cell(voro, rows: list[int], root: int, sites: list) -> dict | None:
    """Face statistics of one site's cell (VoronoiNN._extract_cell_info); None if unbounded."""
    import numpy as np

    vertices = voro.vertices
    center = sites[root].coords
    cell = {}
    for row in rows:
        a, b = voro.ridge_points[row]
        other = int(a) if b == root else int(b)
        vind = voro.ridge_vertices[row]
        if -1 in vind:
            return None
        angle = _solid_angle(center, [vertices[i] for i in vind])
        volume = 0
        for j, k in zip(vind[1:], vind[2:], strict=False):
            volume += _vol_tetra(center, vertices[vind[0]], vertices[j], vertices[k])
        face_dist = np.linalg.norm(center - sites[other].coords) / 2
        normal = np.subtract(sites[other].coords, center)
        normal /= np.linalg.norm(normal)
        cell[other] = {"site": sites[other], "normal": normal, "solid_angle": angle, "volume": volume,
                       "face_dist": face_dist, "area": 3 * volume / face_dist, "n_verts": len(vind)}
    return cell or None


def shared_polyhedra(structure, cutoff: float = SEARCH_CUTOFF) -> dict[int, dict]:
    """Voronoi cells of the sites whose cell is proven equal to the per-site computation."""
    import numpy as np
    from scipy.spatial import Voronoi

    from . import voronoi

    index: dict[tuple, int] = {}
    sites: list = []
    for site in structure:
        for neighbour in structure.get_sites_in_sphere(site.coords, cutoff):
            key = (neighbour.index, tuple(neighbour.image))
            if key not in index:
                index[key] = len(sites)
                sites.append(neighbour)
    voro = Voronoi(np.array([s.coords for s in sites]))
    ridge_points = voro.ridge_points
    targets = structure.elements
    cells = {}
    for n in range(len(structure)):
        root = index.get((n, (0, 0, 0)))
        if root is None:
            continue
        rows = np.flatnonzero((ridge_points[:, 0] == root) | (ridge_points[:, 1] == root)).tolist()
        if not voronoi.accepted(voro, sites[root].coords, rows, cutoff):
            continue
        cell = _cell(voro, rows, root, sites)
        if cell is not None:
            cells[n] = {k: v for k, v in cell.items() if v["site"].specie in targets}
    return cells


@functools.lru_cache(maxsize=1)
def _shared_voronoi_class():
    from pymatgen.core.local_env import VoronoiNN

    class SharedVoronoiNN(VoronoiNN):
        """VoronoiNN that answers from the structure's shared tessellation when it can."""

        current: tuple | None = None  # (structure, cells) being fingerprinted

        def __init__(self, *args, **kwargs):
            # adjacency of faces is not read by CrystalNN: skip computing it
            kwargs["compute_adj_neighbors"] = False
            super().__init__(*args, **kwargs)

        def get_voronoi_polyhedra(self, structure, n):
            current = type(self).current
            if current is not None and current[0] is structure and self.targets is None and n in current[1]:
                return {k: dict(v) for k, v in current[1][n].items()}
            return super().get_voronoi_polyhedra(structure, n)

    return SharedVoronoiNN


def _memo_gramschmidt(original, memo: dict):
    def gramschmidt(vin, uin):
        key = (vin.tobytes(), uin.tobytes())
        result = memo.get(key)
        if result is None:
            result = memo[key] = original(vin, uin)
        return result.copy()  # callers normalise the result in place

    return gramschmidt


@functools.lru_cache(maxsize=1)
def _numpy_with_fast_norm():
    """A copy of the numpy module namespace whose `linalg.norm` skips the checks for 1-D float64."""
    import types

    import numpy as np

    norm, sqrt, float64, ndarray = np.linalg.norm, np.sqrt, np.float64, np.ndarray

    def fast_norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - numpy's signature
        if ord is None and axis is None and not keepdims and type(x) is ndarray and x.dtype == float64 \
                and x.ndim == 1:
            return sqrt(x.dot(x))  # what numpy.linalg.norm computes for this case
        return norm(x, ord, axis, keepdims)

    linalg = types.ModuleType("numpy.linalg")
    linalg.__dict__.update(np.linalg.__dict__)
    linalg.norm = fast_norm
    module = types.ModuleType("numpy")
    module.__dict__.update(np.__dict__)
    module.linalg = linalg
    return module


@contextlib.contextmanager
def _shared(structure, cells) -> Iterator[None]:
    """Point pymatgen's local_env at the shared cells of `structure`, a memoised gramschmidt and
    the fast-norm numpy.

    CrystalNN builds `VoronoiNN(...)` and the order parameters call `gramschmidt(...)` and
    `np.linalg.norm(...)` through module-level names, so those names are swapped for the
    duration of one structure's fingerprint (in this process only) and restored afterwards.
    """
    from pymatgen.core.local_env import CrystalNN

    shared = _shared_voronoi_class()
    namespace = CrystalNN.get_nn_data.__globals__
    originals = namespace["VoronoiNN"], namespace["gramschmidt"], namespace["np"]
    namespace["VoronoiNN"], shared.current = shared, (structure, cells)
    namespace["gramschmidt"] = _memo_gramschmidt(originals[1], {})
    namespace["np"] = _numpy_with_fast_norm()
    try:
        yield
    finally:
        namespace["VoronoiNN"], namespace["gramschmidt"], namespace["np"] = originals
        shared.current = None


@functools.lru_cache(maxsize=1)
def _motifs() -> dict[int, list]:
    """Per coordination number, the preset's entries: "wt" or (order parameter type, params)."""
    return {cn: [op if op == "wt" else (op._types[0], op._params[0]) for op in ops]
            for cn, ops in featurizer().ops.items()}


def _order_parameters(fingerprint, structure, i: int, cn: int, neighbours) -> list:
    """The values of CN `cn`'s motif types at site i (one geometry for all; pymatgen's if unsupported)."""
    from . import order_params

    motifs = [op for op in _motifs()[cn] if op != "wt"]
    try:
        return order_params.order_parameters(structure[i].coords, [s.coords for s in neighbours], motifs)
    except order_params.Unsupported:
        sites, indices = [structure[i], *neighbours], list(range(1, len(neighbours) + 1))
        return [op.get_order_parameters(sites, 0, indices_neighs=indices)[0]
                for op in fingerprint.ops[cn] if op != "wt"]


def _featurize(fingerprint, structure, i: int) -> list:
    """matminer's CrystalNNFingerprint.featurize (no chemistry part, as in 'ops') with the order
    parameters of a coordination number computed once for all its motif types."""
    nndata = fingerprint.cnn.get_nn_data(structure, i)
    row = []
    for cn in range(1, max(fingerprint.op_types) + 1):
        wt = nndata.cn_weights.get(cn, 0)
        values = None
        for op in _motifs().get(cn, ()):
            if op == "wt" or wt == 0:
                row.append(wt)
                continue
            if values is None:
                neighbours = [entry["site"] for entry in nndata.cn_nninfo[cn]]
                values = iter(_order_parameters(fingerprint, structure, i, cn, neighbours))
            row.append(wt * (next(values) or 0))
    return row


def site_fingerprints(structure, shared: bool = True, fast_order_params: bool = True, fast_voronoi: bool = True):
    """(sites x 61) CrystalNN 'ops' fingerprints; errors propagate (the caller records them).

    shared: one tessellation per structure (else matminer's own per-site path throughout);
    fast_order_params: the order parameters from order_params.py (else pymatgen's, per type);
    fast_voronoi: the shared cells from arrays (voronoi.py, the same cells bit for bit) rather
    than from pymatgen's neighbour objects (`shared_polyhedra`).
    """
    import numpy as np

    from ..structures import StructureError
    from . import voronoi

    fingerprint = featurizer()
    if not shared:
        return np.array([fingerprint.featurize(structure, i) for i in range(len(structure))])
    featurize = functools.partial(_featurize, fingerprint) if fast_order_params and \
        fingerprint.chem_info is None else fingerprint.featurize
    try:
        polyhedra = voronoi.polyhedra if fast_voronoi else shared_polyhedra
        cells = polyhedra(structure, fingerprint.cnn.search_cutoff)
    except StructureError:  # the caller's time limit
        raise
    except Exception:  # noqa: BLE001 - qhull on degenerate input: every site takes pymatgen's path
        cells = {}
    with _shared(structure, cells):
        return np.array([featurize(structure, i) for i in range(len(structure))])


def structure_fingerprint(structure, shared: bool = True, fast_order_params: bool = True,
                          fast_voronoi: bool = True):
    """CDVAE's structure fingerprint: the plain mean of the site fingerprints (61 numbers)."""
    return site_fingerprints(structure, shared, fast_order_params, fast_voronoi).mean(axis=0)
