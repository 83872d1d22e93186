"""The shared Voronoi cells of `crystalnn.shared_polyhedra`, from numpy arrays, bit for bit.

`crystalnn.shared_polyhedra` asks pymatgen's `Structure.get_sites_in_sphere` for the atom
images within the cutoff of every site (~35k `PeriodicNeighbor` objects for a perovskite),
keeps the first of each (index, image), tessellates their coordinates and computes the
face statistics of each cell ridge by ridge. `polyhedra` gives the same cells:

- the images come from the very call `Lattice.get_points_in_sphere` makes
  (`find_points_in_spheres`, one centre at a time: same indices, images, order), their
  fractional coordinates from the same `frac_points[indices] + images`; the cartesian ones are
  `np.dot(frac, matrix)` per point in pymatgen (`PeriodicNeighbor.coords`), here `np.vecdot`
  of a row and a column, numpy's 1-D dot (BLAS ddot) for every element: the same bits as the
  3x3 gemv on this hardware (checked in tests), so qhull gets the same points in the same order;
- `PeriodicNeighbor`s are built only for the points that end up in a returned cell, with the
  attributes `get_sites_in_sphere` gives them (species, fractional row, lattice, properties,
  distance to the first centre whose sphere held them, index, image, label);
- the face statistics are `crystalnn._cell`'s formulas on arrays of all faces at once: the same
  elementwise operations in the same order, dot products and norms as `order_params._dots`
  (numpy's 1-D dot, as `np.dot` / `np.linalg.norm` of 3-vectors), `np.arctan` on an array (its
  elementwise loop, as on a scalar), and the sums over a face's triangles accumulated column
  by column in pymatgen's order (never numpy's pairwise `sum`).

The rule that accepts a cell (`accepted`: bounded, every vertex within cutoff / 2 - 1e-6 of the
site) is the one `crystalnn.shared_polyhedra` applies too; sites outside it take pymatgen's
per-site path as before.
"""

from __future__ import annotations

import math


def sphere_points(structure, cutoff: float):
    """Atom images within `cutoff` of each site, first occurrence of each (index, image) in
    `get_sites_in_sphere` order: (frac, cart, distance, index, image) arrays."""
    import numpy as np
    from pymatgen.optimization.neighbors import find_points_in_spheres

    lattice = structure.lattice
    # what Lattice.get_points_in_sphere passes to find_points_in_spheres
    frac_points = np.ascontiguousarray(structure.frac_coords, dtype=float)
    cart_points = np.ascontiguousarray(lattice.get_cartesian_coords(frac_points), dtype=float)
    pbc = np.ascontiguousarray(lattice.pbc, dtype=np.int64)
    matrix = np.ascontiguousarray(lattice.matrix, dtype=float)
    found = [find_points_in_spheres(all_coords=cart_points, center_coords=np.ascontiguousarray([site.coords],
                                    dtype=float), r=float(cutoff), pbc=pbc, lattice=matrix, tol=1e-8)[1:]
             for site in structure]
    indices = np.concatenate([f[0] for f in found])
    images = np.concatenate([f[1].reshape(-1, 3) for f in found])
    distances = np.concatenate([f[2] for f in found])
    first = _first_occurrences(indices, images.astype(np.int64))
    indices, images, distances = indices[first], images[first], distances[first]
    frac = frac_points[indices] + images
    cart = np.vecdot(frac[:, None, :], np.ascontiguousarray(matrix.T)[None, :, :])
    return frac, cart, distances, indices, images


def _first_occurrences(indices, images):
    """Positions of the first (index, image) of each kind, in order (the dict of shared_polyhedra)."""
    import numpy as np

    if len(indices) == 0:
        return np.zeros(0, dtype=np.int64)
    low = images.min(axis=0)
    width = images.max(axis=0) - low + 1
    if math.prod(width.tolist()) * (int(indices.max()) + 1) < 2**62:  # one int64 per key
        shifted = images - low
        keys = ((indices * width[0] + shifted[:, 0]) * width[1] + shifted[:, 1]) * width[2] + shifted[:, 2]
        _, first = np.unique(keys, return_index=True)  # a stable sort: the first of equal keys
    else:
        _, first = np.unique(np.column_stack([indices, images]), axis=0, return_index=True)
    first.sort()
    return first


def _faces(voro, n_points: int, roots: dict[int, int]) -> list[list[int]]:
    """[site, ridge row, other point] of every ridge of a site's cell, by site, then ridge row
    (crystalnn's `np.flatnonzero` per root; the other point as its `_cell` picks it)."""
    import numpy as np

    owner = np.full(n_points, -1, dtype=np.int64)
    for n, root in roots.items():
        owner[root] = n
    ridge_points = voro.ridge_points
    rows = np.arange(len(ridge_points))
    entries = []
    for side in (0, 1):
        mine = owner[ridge_points[:, side]] >= 0
        entries.append(np.column_stack([owner[ridge_points[mine, side]], rows[mine], ridge_points[mine, 1 - side]]))
    stacked = np.concatenate(entries)
    return stacked[np.lexsort((stacked[:, 1], stacked[:, 0]))].tolist()


def accepted(voro, center, rows: list[int], cutoff: float) -> bool:
    """The cell (ridge `rows` of `voro`) of the site at `center` equals pymatgen's per-site cell:
    bounded, every vertex within cutoff / 2 of the site (crystalnn's docstring says why)."""
    import numpy as np

    used = sorted({v for row in rows for v in voro.ridge_vertices[row]})
    if not rows or -1 in used:
        return False
    reach = np.sqrt(((voro.vertices[used] - center) ** 2).sum(axis=1)).max()
    return bool(reach < cutoff / 2 - 1e-6)


def _sequential_sums(terms, face_of, n_faces: int):
    """Per face, `total = 0; total += term` over its terms in order (pymatgen's loops)."""
    import numpy as np

    position = np.arange(len(face_of)) - np.searchsorted(face_of, face_of)  # rank within its face
    table = np.zeros((n_faces, int(position.max()) + 1 if len(face_of) else 1))
    table[face_of, position] = terms  # terms are > 0 (or 0 for a volume): a padding 0.0 adds nothing
    total = table[:, 0].copy()
    for column in table.T[1:]:
        total = total + column
    return total


def face_statistics(vertices, centers, others, faces: list[list[int]]) -> dict:
    """crystalnn._cell's solid angle, volume, face distance, area and normal of every face."""
    import numpy as np

    from .order_params import _dots

    n_faces = len(faces)
    face_of = np.repeat(np.arange(n_faces), [len(f) - 2 for f in faces])
    first = np.array([f[0] for f in faces])[face_of]
    ii = np.concatenate([f[1:-1] for f in faces]).astype(np.int64)
    jj = np.concatenate([f[2:] for f in faces]).astype(np.int64)
    center = centers[face_of]
    d0, di, dj = vertices[first] - center, vertices[ii] - center, vertices[jj] - center
    r0, ri, rj = (np.sqrt(_dots(d, d)) for d in (d0, di, dj))
    tp = np.abs(_dots(d0, _cross(di, dj)))
    de = r0 * ri * rj + rj * _dots(d0, di) + ri * _dots(d0, dj) + r0 * _dots(di, dj)
    with np.errstate(divide="ignore", invalid="ignore"):
        part = np.where(de == 0, np.where(tp > 0, 0.5 * math.pi, -0.5 * math.pi), np.arctan(tp / de))
    part = np.where(part > 0, part, part + math.pi)
    angles = _sequential_sums(part * 2, face_of, n_faces)
    # _vol_tetra(center, v[first], v[j], v[k]): vt1 - vt4 etc. with vt4 = v[k]
    tetra = np.abs(_dots(center - vertices[jj], _cross(vertices[first] - vertices[jj],
                                                       vertices[ii] - vertices[jj]))) / 6
    volumes = _sequential_sums(tetra, face_of, n_faces)
    face_dist = np.sqrt(_dots(centers - others, centers - others)) / 2
    normal = np.subtract(others, centers)
    normal = normal / np.sqrt(_dots(normal, normal))[:, None]
    return {"solid_angle": angles, "volume": volumes, "face_dist": face_dist,
            "area": 3 * volumes / face_dist, "normal": normal}


def _cross(a, b):
    """crystalnn._cross (np.cross's products and differences) of rows."""
    import numpy as np

    return np.column_stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]])


def _neighbour(structure, points, k: int):
    """The PeriodicNeighbor get_sites_in_sphere builds for point k."""
    from pymatgen.core.structure import PeriodicNeighbor

    frac, _, distances, indices, images = points
    idx = indices[k]
    site = structure[idx]
    return PeriodicNeighbor(site.species, frac[k], structure._lattice, properties=site.properties,
                            nn_distance=distances[k], image=tuple(images[k]), index=idx, label=site.label)


def polyhedra(structure, cutoff: float) -> dict[int, dict]:
    """crystalnn.shared_polyhedra's cells (same faces, same numbers), from arrays."""
    import numpy as np
    from scipy.spatial import Voronoi

    points = sphere_points(structure, cutoff)
    _, cart, _, indices, images = points
    home = np.flatnonzero(~images.any(axis=1))
    roots = {int(indices[k]): int(k) for k in home}
    voro = Voronoi(cart)
    by_site: dict[int, list[tuple[int, int]]] = {}
    for n, row, other in _faces(voro, len(cart), roots):
        by_site.setdefault(n, []).append((row, other))
    shared_sites = [n for n in sorted(by_site)
                    if accepted(voro, cart[roots[n]], [row for row, _ in by_site[n]], cutoff)]
    listed = [(n, row, other) for n in shared_sites for row, other in by_site[n]]
    if not listed:
        return {}
    faces = [voro.ridge_vertices[row] for _, row, _ in listed]
    centers = cart[[roots[n] for n, _, _ in listed]]
    others = cart[[other for _, _, other in listed]]
    stats = face_statistics(voro.vertices, centers, others, faces)
    targets = structure.elements
    keep = {int(i): structure[int(i)].specie in targets for i in np.unique(indices)}
    neighbours: dict[int, object] = {}
    cells: dict[int, dict] = {n: {} for n in shared_sites}
    for f, (n, _, other) in enumerate(listed):
        if not keep[int(indices[other])]:
            continue
        site = neighbours.get(other)
        if site is None:
            site = neighbours[other] = _neighbour(structure, points, other)
        cells[n][other] = {"site": site, "normal": stats["normal"][f], "solid_angle": stats["solid_angle"][f],
                           "volume": stats["volume"][f], "face_dist": stats["face_dist"][f],
                           "area": stats["area"][f], "n_verts": len(faces[f])}
    return cells
