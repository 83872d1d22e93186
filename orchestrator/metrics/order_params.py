"""pymatgen's local structure order parameters for the CrystalNN 'ops' preset, computed once per
neighbour set.

matminer's `CrystalNNFingerprint.featurize` builds one single-type
`LocalStructOrderParams` per (coordination number, motif) and calls its
`get_order_parameters([centre] + neighbours, 0, indices_neighs=[1..n])` for
every site: each call repeats the same O(n^3) geometry (unit bond vectors, the
angle theta between bonds j and k, the Gram-Schmidt x-axis of bond k in the
frame of bond j, the azimuth phi of bond m about bond j measured from that
axis) in Python loops. Here that geometry is computed once per neighbour set
with numpy, and each motif type only does its own accumulation.

Same numbers, bit for bit (tests/test_metrics_order_params.py compares every
type on real and degenerate neighbour sets):
- every 3-vector dot product goes through numpy's `dot` of two 1-D float64
  vectors, as `np.inner` / `np.linalg.norm` in pymatgen do: `np.vecdot` calls
  that same BLAS ddot per pair (which uses FMA on this hardware, so a plain
  elementwise `sum(a * b)` would NOT match);
- the remaining elementwise arithmetic (subtractions, the Gram-Schmidt step,
  scaling by 1/pi, ...) is the same IEEE operation in numpy as in Python;
- acos / exp / cos and `x ** 2` are evaluated with the `math` module and
  Python's `**` (numpy's SIMD versions may differ in the last bit);
- the terms of one (j, k) pair are added in pymatgen's order (k term, then for
  each m the south-pole term and the m term) with a cumulative sum, which is
  sequential; a term that does not apply adds 0.0, which changes nothing;
- the per-j sums of "bent" and "bcc" use Python's `sum` as pymatgen does, and
  the maximum of the "_max" types is Python's `max` in pymatgen's order.

pymatgen reads the loop variable `typ` after an inner loop (the south-pole
term); with one type per object, as the preset builds them, that is the
object's own type, which is what is reproduced here.
"""

from __future__ import annotations

import math

ONE_PI = 1 / math.pi
HALF_PI = math.pi / 2.0
VERY_SMALL = 1e-12  # pymatgen's threshold for a vanishing Gram-Schmidt axis
LEFT_OF_UNITY = 1 - 1e-12
FAC_BCC = 1 / math.exp(-0.5)
ASIN_THIRD = math.asin(1 / 3)

PYRAMIDS = frozenset({"T", "tri_pyr", "sq_pyr", "pent_pyr", "hex_pyr"})
# equatorial-plane types with a south pole (pymatgen's k-term and south-pole sets; its sq_bipyr
# follows the same rules but the preset does not use it, so it is not claimed here)
POLAR = frozenset({"see_saw_rect", "tri_bipyr", "pent_bipyr", "hex_bipyr", "oct_max", "sq_plan_max",
                   "hex_plan_max"})
TARGET_ANGLE = frozenset({"tri_plan_max", "tet_max"})
BOOPS = ("q2", "q4", "q6")
SUPPORTED = frozenset({"sgl_bd", "bent", "pent_plan_max", "bcc", "cuboct_max", *PYRAMIDS, *POLAR,
                       *TARGET_ANGLE, *BOOPS})


class Unsupported(ValueError):
    """A neighbour set or motif type this module does not reproduce (use pymatgen's code)."""


def _dots(a, b):
    """Dot products along the last axis of (..., 3) arrays. np.vecdot's float64 loop calls numpy's
    1-D dot, the BLAS ddot behind np.inner and np.linalg.norm of a 3-vector (FMA on this hardware,
    so a plain `(a * b).sum(-1)` or einsum would not match)."""
    import numpy as np

    return np.vecdot(a, b)


def _clamped_acos(values) -> list[float]:
    """math.acos(max(-1.0, min(x, 1.0))) of finite values (np.clip takes the same value then)."""
    import numpy as np

    return list(map(math.acos, np.clip(values, -1.0, 1.0).ravel().tolist()))


def _gauss(tmp):
    """math.exp(-0.5 * t * t) of every element, in pymatgen's operation order."""
    import numpy as np

    return np.array([math.exp(-0.5 * t * t) for t in tmp.ravel().tolist()]).reshape(tmp.shape)


class Geometry:
    """The angles of one neighbour set that every motif type reads (pymatgen's j/k/m loops)."""

    def __init__(self, centre, neighbours):
        import numpy as np

        self.n = n = len(neighbours)
        rij = np.asarray(neighbours, dtype=float).reshape(n, 3) - np.asarray(centre, dtype=float)
        self.dist = np.sqrt(_dots(rij, rij))
        if not (np.isfinite(rij).all() and (self.dist > 0).all()):
            raise Unsupported("a neighbour on the centre or non-finite coordinates")
        self.unit = rij / self.dist[:, None]
        self._memo: dict = {}
        if n < 2:
            return
        unit = self.unit
        cosines = _dots(unit[:, None, :], unit[None, :, :])  # [j, k] = inner(bond j, bond k)
        self.theta = np.array(_clamped_acos(cosines)).reshape(n, n)
        # gramschmidt(bond k, bond j): bond k minus its projection on bond j, then its norm
        coef = cosines / np.diagonal(cosines)[:, None]
        axes = unit[None, :, :] - coef[:, :, None] * unit[:, None, :]
        norms = np.sqrt(_dots(axes, axes))
        off = ~np.eye(n, dtype=bool)
        self.pairs = off  # [j, k]: j != k, pymatgen's (j, kc) entries in this order
        self.flat = norms < VERY_SMALL  # no x-axis: no m terms at all (flag_xaxis / flag_xtwoaxis)
        with np.errstate(divide="ignore", invalid="ignore"):
            axes = axes / norms[:, :, None]
        distinct = off[:, :, None] & off[:, None, :] & ~np.eye(n, dtype=bool)[None, :, :]
        # [j, k, m]: m not in {j, k} and bond k gives an x-axis (pymatgen's m loop runs)
        self.m_runs = distinct & ~self.flat[:, :, None]
        self.m_terms = self.m_runs & ~self.flat[:, None, :]  # ...and bond m has an azimuth
        self.where = np.nonzero(self.m_terms)
        j, k, m = self.where
        self.phi = np.array(_clamped_acos(_dots(axes[j, m], axes[j, k])))

    def cos_power(self, fac, exponent):
        """math.cos(fac * phi) ** exponent over the m terms (pymatgen's azimuth factor)."""
        import numpy as np

        key = ("cos", fac, exponent)
        if key not in self._memo:
            self._memo[key] = np.array([math.cos(fac * p) ** exponent for p in self.phi.tolist()])
        return self._memo[key]

    def gauss(self, kind, *args):
        """exp(-0.5 t^2) of theta for one of pymatgen's Gaussian terms, memoised per parameters."""
        import numpy as np

        key = (kind, *args)
        if key not in self._memo:
            scaled = self.theta * ONE_PI
            if kind == "target":  # IGW_TA * (theta / pi - TA)
                tmp = args[0] * (scaled - args[1])
            elif kind == "hex":  # IGW_TA * (|theta / pi - 0.5| - TA)
                tmp = args[0] * (np.abs(scaled - 0.5) - args[1])
            elif kind == "pent":  # IGW_TA * (theta / pi - (0.4 or 0.8))
                tmp = args[0] * (scaled - np.where(self.theta <= args[1] * math.pi, 0.4, 0.8))
            else:  # "equator" IGW * (theta / pi - 0.5), "pole" IGW * (theta / pi - 1.0)
                tmp = args[0] * (scaled - (0.5 if kind == "equator" else 1.0))
            self._memo[key] = _gauss(tmp)
        return self._memo[key]


def _accumulate(geometry, k_terms, m_terms):
    """Per (j, k): 0.0 + k term + (south pole, m term for each m in order), added sequentially.

    k_terms: (value, count) arrays [j, k]; m_terms: list of (value, count) arrays [j, k, m] in the
    order pymatgen adds them for one m. Returns (values, counts) [j, k].
    """
    import numpy as np

    n = geometry.n
    columns = 2 + len(m_terms) * n
    values, counts = np.zeros((n, n, columns)), np.zeros((n, n, columns))
    values[:, :, 1], counts[:, :, 1] = k_terms
    for offset, (value, count) in enumerate(m_terms):
        values[:, :, 2 + offset::len(m_terms)] = value
        counts[:, :, 2 + offset::len(m_terms)] = count
    return np.cumsum(values, axis=2)[:, :, -1], np.cumsum(counts, axis=2)[:, :, -1]


def _scatter(geometry, value, selected=None):
    """An [j, k, m] array: `value` (one per m term, or a scalar) at the m terms, 0.0 elsewhere;
    only where `selected` (one bool per m term) holds if given."""
    import numpy as np

    out = np.zeros((geometry.n,) * 3)
    if selected is None:
        out[geometry.where] = value
    else:
        keep = np.asarray(selected, dtype=bool)
        out[tuple(axis[keep] for axis in geometry.where)] = np.broadcast_to(value, keep.shape)[keep]
    return out


def _largest(geometry, values, counts):
    """The "_max" types: the largest normalised (j, k) entry, or None with fewer than 2 bonds."""
    import numpy as np

    if geometry.n < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(counts > 1e-12, values / counts, 0.0)
    return max(ratios[geometry.pairs].tolist())


def _row_sums(geometry, values) -> list[float]:
    """Python's sum of each j's (k != j) entries, as pymatgen sums its lists."""
    return [sum(row) for row in values[geometry.pairs].reshape(geometry.n, geometry.n - 1).tolist()]


def _bent(geometry, p):
    if geometry.n < 2:
        return None
    values = geometry.gauss("target", p["IGW_TA"], p["TA"]) * geometry.pairs
    total, weight = 0.0, 0.0
    for row in _row_sums(geometry, values):
        total += row
        weight += float(geometry.n - 1)
    return total / weight if weight > 1e-12 else None


def _every_pair(geometry, gauss, term):
    """The "_max" value when every (j, k) pair adds its Gaussian and every m term its `term`."""
    return _largest(geometry, *_accumulate(geometry, (gauss * geometry.pairs, geometry.pairs),
                                           [(_scatter(geometry, term), geometry.m_terms)]))


def _target_angle(geometry, p):  # tri_plan_max, tet_max
    if geometry.n < 2:
        return None
    gauss = geometry.gauss("target", p["IGW_TA"], p["TA"])
    j, k, m = geometry.where
    return _every_pair(geometry, gauss, gauss[j, m] * geometry.cos_power(p["fac_AA"], p["exp_cos_AA"]))


def _pent_plan(geometry, p):
    if geometry.n < 2:
        return None
    gauss = geometry.gauss("pent", p["IGW_TA"], p["TA"])
    j, k, m = geometry.where
    cos = geometry.cos_power(1, 1)
    return _every_pair(geometry, gauss, gauss[j, m] * cos * cos)


def _pyramid(geometry, p):  # T, tri_pyr, sq_pyr, pent_pyr, hex_pyr
    if geometry.n < 2:
        return None
    gauss = geometry.gauss("equator", p["IGW_EP"])
    j, k, m = geometry.where
    return _every_pair(geometry, gauss, geometry.cos_power(p["fac_AA"], p["exp_cos_AA"]) * gauss[j, m])


def _polar(geometry, p, typ):  # see_saw_rect, *_bipyr, oct_max, sq_plan_max, hex_plan_max
    import numpy as np

    if geometry.n < 2:
        return None
    theta, low = geometry.theta, p["min_SPP"]
    equator = theta < low
    if typ == "hex_plan_max":
        gauss = geometry.gauss("hex", p["IGW_TA"], p["TA"])
    else:
        gauss = geometry.gauss("equator", p["IGW_EP"])
    k_on = geometry.pairs & equator
    pole = (theta >= low)[:, None, :] & geometry.m_runs  # [j, k, m]: m at the south pole of j
    pole_value = np.where(pole, geometry.gauss("pole", p["IGW_SPP"])[:, None, :], 0.0)
    j, k, m = geometry.where
    selected = equator[j, m] & equator[j, k]
    if typ == "see_saw_rect":
        selected &= geometry.phi < 0.75 * math.pi
    term = geometry.cos_power(p["fac_AA"], p["exp_cos_AA"]) * gauss[j, m]
    m_on = _scatter(geometry, 1.0, selected)
    return _largest(geometry, *_accumulate(geometry, (np.where(k_on, gauss, 0.0), k_on),
                                           [(pole_value, pole), (_scatter(geometry, term, selected), m_on)]))


def _bcc(geometry, p):
    import numpy as np

    n = geometry.n
    if n < 2:
        return None
    theta, low, w = geometry.theta, p["min_SPP"], p["w_SPP"]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)  # j < k
    k_on = upper & (theta >= low)
    k_value = np.where(k_on, w * geometry.gauss("pole", p["IGW_SPP"]), 0.0)
    j, k, m = geometry.where
    selected = upper[j, k] & (theta[j, k] < low)
    terms = []
    for jj, kk, mm, phi, on in zip(j.tolist(), k.tolist(), m.tolist(), geometry.phi.tolist(),
                                   selected.tolist(), strict=True):
        if on:
            fac = 1 if theta[jj, kk] > HALF_PI else -1
            tmp = (float(theta[jj, mm]) - HALF_PI) / ASIN_THIRD
            terms.append(fac * math.cos(3 * phi) * FAC_BCC * tmp * math.exp(-0.5 * tmp * tmp))
        else:
            terms.append(0.0)
    values, _ = _accumulate(geometry, (k_value, np.where(k_on, w, 0.0)), [(_scatter(geometry, np.array(terms)),
                                                         _scatter(geometry, 1.0, selected))])
    if n <= 3:
        return None
    total = 0.0
    for row in _row_sums(geometry, values):
        total += row
    return total / float(0.5 * float(n * (6 + (n - 2) * (n - 3))))


def _cuboct(geometry, p):
    import numpy as np

    if geometry.n < 2:
        return None
    theta, w = geometry.theta, p["w_SPP"]
    low, high, top = p[4], p[2], p["min_SPP"]
    k_on = geometry.pairs & (theta >= top)
    k_value = np.where(k_on, w * geometry.gauss("pole", p["IGW_SPP"]), 0.0)
    j, k, m = geometry.where
    terms, counted = [], []
    for tk, tm, phi in zip(theta[j, k].tolist(), theta[j, m].tolist(), geometry.phi.tolist(), strict=True):
        value = None
        if tm < top and low < tk < high:
            if low < tm < high:
                tmp, tmp2 = math.cos(phi), p[5] * (tm * ONE_PI - 0.5)
                value = tmp * tmp * math.exp(-0.5 * tmp2 * tmp2)
            elif tm < low or tm > high:
                tmp = 0.0556 * (math.cos(phi - 0.5 * math.pi) - 0.81649658)
                tmp2 = p[6] * (tm * ONE_PI - (1 / 3 if tm < low else 2 / 3.0))
                value = math.exp(-0.5 * tmp * tmp) * math.exp(-0.5 * tmp2 * tmp2)
        terms.append(0.0 if value is None else value)
        counted.append(value is not None)
    m_terms = [(_scatter(geometry, np.array(terms)), _scatter(geometry, 1.0, np.array(counted)))]
    return _largest(geometry, *_accumulate(geometry, (k_value, np.where(k_on, w, 0.0)), m_terms))


def _single_bond(geometry, p):
    distances = sorted(geometry.dist.tolist())
    if len(distances) == 1:
        return 1
    if len(distances) > 1:
        return 1 - distances[0] / distances[1]
    return 0.0


# Steinhardt bond-orientational order (pymatgen get_q2 / get_q4 / get_q6): for each l, the
# normalisation 2l + 1, the prefactor of Y_l^+-m per m > 0 as (constant, polynomial of the cos
# powers or None), to be multiplied as constant * sin^m(theta) * polynomial, and the m = 0 term.
# Products keep pymatgen's left-to-right order.
def _q_tables():
    pi = math.pi
    sqrt_15_2pi, sqrt_5_pi = math.sqrt(15 / (2 * pi)), math.sqrt(5 / pi)
    sqrt_35_pi, sqrt_35_2pi = math.sqrt(35 / pi), math.sqrt(35 / (2 * pi))
    sqrt_5_2pi, sqrt_1_pi = math.sqrt(5 / (2 * pi)), math.sqrt(1 / pi)
    sqrt_3003_pi, sqrt_1001_pi = math.sqrt(3003 / pi), math.sqrt(1001 / pi)
    sqrt_91_2pi, sqrt_1365_pi = math.sqrt(91 / (2 * pi)), math.sqrt(1365 / pi)
    sqrt_273_2pi, sqrt_13_pi = math.sqrt(273 / (2 * pi)), math.sqrt(13 / pi)
    i16_3, i8_3, i64, i32, i32_3, i16 = 3 / 16.0, 3 / 8.0, 1 / 64.0, 1 / 32.0, 3 / 32.0, 1 / 16.0
    return {
        "q2": (5, {2: (0.25 * sqrt_15_2pi, None), 1: (0.5 * sqrt_15_2pi, lambda c: c[1])},
               lambda c: 0.25 * sqrt_5_pi * (3 * c[2] - 1.0)),
        "q4": (9, {4: (i16_3 * sqrt_35_2pi, None), 3: (i8_3 * sqrt_35_pi, lambda c: c[1]),
                   2: (i8_3 * sqrt_5_2pi, lambda c: 7 * c[2] - 1.0),
                   1: (i8_3 * sqrt_5_pi, lambda c: 7 * c[3] - 3 * c[1])},
               lambda c: i16_3 * sqrt_1_pi * (35 * c[4] - 30 * c[2] + 3.0)),
        "q6": (13, {6: (i64 * sqrt_3003_pi, None), 5: (i32_3 * sqrt_1001_pi, lambda c: c[1]),
                    4: (i32_3 * sqrt_91_2pi, lambda c: 11 * c[2] - 1.0),
                    3: (i32 * sqrt_1365_pi, lambda c: 11 * c[3] - 3 * c[1]),
                    2: (i64 * sqrt_1365_pi, lambda c: 33 * c[4] - 18 * c[2] + 1.0),
                    1: (i16 * sqrt_273_2pi, lambda c: 33 * c[5] - 30 * c[3] + 5 * c[1])},
               lambda c: i32 * sqrt_13_pi * (231 * c[6] - 315 * c[4] + 105 * c[2] - 5.0)),
    }


Q_TABLES = _q_tables()


def _angles(geometry):
    """Polar and azimuthal angle of every bond (z is the north pole, x the prime meridian)."""
    thetas, phis = [], []
    for x, y, z in geometry.unit.tolist():
        thetas.append(math.acos(max(-1.0, min(z, 1.0))))
        phi = 0.0
        if -LEFT_OF_UNITY < z < LEFT_OF_UNITY:
            phi = math.acos(max(-1.0, min(x / math.sqrt(x * x + y * y), 1.0)))
            if y < 0.0:
                phi = -phi
        phis.append(phi)
    return thetas, phis


def _trig(geometry):
    """Per bond: powers 1..6 of sin/cos theta and sin/cos(m phi) (compute_trigonometric_terms)."""
    key = ("trig",)
    if key not in geometry._memo:
        thetas, phis = _angles(geometry)
        bonds = []
        for theta, phi in zip(thetas, phis, strict=True):
            s, c = [1.0, math.sin(theta)], [1.0, math.cos(theta)]
            for _ in range(2, 7):
                s.append(s[-1] * s[1])
                c.append(c[-1] * c[1])
            sin_m = [0.0, math.sin(phi)] + [math.sin(float(m) * phi) for m in range(2, 7)]
            cos_m = [1.0, math.cos(phi)] + [math.cos(float(m) * phi) for m in range(2, 7)]
            bonds.append((s, c, sin_m, cos_m))
        geometry._memo[key] = bonds
    return geometry._memo[key]


def _boop(geometry, typ):
    n = geometry.n
    if n == 0:
        return None
    bonds = _trig(geometry)
    norm, prefactors, zeroth = Q_TABLES[typ]
    weights = {}
    for m, (constant, poly) in prefactors.items():
        weights[m] = [constant * s[m] if poly is None else constant * s[m] * poly(c) for s, c, _, _ in bonds]
    acc = 0.0
    for m in range(-len(prefactors), len(prefactors) + 1):
        real = imag = 0.0
        if m == 0:
            for _, c, _, _ in bonds:
                real += zeroth(c)
            acc += real * real
            continue
        for weight, (_, _, sin_m, cos_m) in zip(weights[abs(m)], bonds, strict=True):
            if m < 0:
                real += weight * cos_m[-m]
                imag -= weight * sin_m[-m]
            elif m % 2:
                real -= weight * cos_m[m]
                imag -= weight * sin_m[m]
            else:
                real += weight * cos_m[m]
                imag += weight * sin_m[m]
        acc += real * real + imag * imag
    return math.sqrt(4 * math.pi * acc / (norm * float(n**2)))


FAMILIES = {"sgl_bd": _single_bond, "bent": _bent, "pent_plan_max": _pent_plan, "bcc": _bcc,
            "cuboct_max": _cuboct, **dict.fromkeys(TARGET_ANGLE, _target_angle),
            **dict.fromkeys(PYRAMIDS, _pyramid)}


def order_parameter(geometry, typ: str, params):
    """One single-type LocalStructOrderParams([typ], [params]).get_order_parameters(...)[0] value."""
    if typ in BOOPS:
        return _boop(geometry, typ)
    if typ in POLAR:
        return _polar(geometry, params, typ)
    return FAMILIES[typ](geometry, params)


def order_parameters(centre, neighbours, ops) -> list:
    """Values of the (type, params) `ops` for one centre and its neighbours' cartesian coords, as
    matminer gets them: get_order_parameters([centre] + neighbours, 0, indices_neighs=[1..n])."""
    unknown = {typ for typ, _ in ops} - SUPPORTED
    if unknown:
        raise Unsupported(f"order parameter types {sorted(unknown)}")
    geometry = Geometry(centre, neighbours)
    return [order_parameter(geometry, typ, params) for typ, params in ops]
