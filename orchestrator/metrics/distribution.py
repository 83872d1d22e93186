"""Property distributions of a seeded subset of valid crystals, diversity, Fréchet distance.

metrics.md §1: the subset is `numpy.random.RandomState(seed).choice(n_valid, size,
replace=False)` over the valid crystals in input order (CDVAE drew it without a
seed; gencsp always records the seed).
"""

from __future__ import annotations

SUBSET_SIZE = 1000


class SubsetError(ValueError):
    """Fewer valid crystals than the profile's subset needs."""


def subset_indices(n_valid: int, size: int = SUBSET_SIZE, seed: int = 0, allow_fewer: bool = False):
    """Positions (into the valid crystals) of the distribution subset.

    With fewer than `size` valid crystals the reference scripts stop with an error;
    `allow_fewer` (gencsp profile) takes all of them instead, in input order,
    and the caller reports the subset size next to the numbers.
    """
    import numpy as np

    if n_valid >= size:
        return np.random.RandomState(seed).choice(n_valid, size, replace=False)
    if not allow_fewer:
        raise SubsetError(f"not enough valid crystals in the predicted set: {n_valid}/{size}")
    return np.arange(n_valid)


def wdist(values, reference) -> float:
    from scipy.stats import wasserstein_distance

    if len(values) == 0 or len(reference) == 0:
        return float("nan")
    return float(wasserstein_distance(values, reference))


def mean_pairwise_distance(fingerprints) -> float:
    """CDVAE's diversity: mean Euclidean distance over all pairs."""
    import numpy as np
    from scipy.spatial.distance import pdist

    if len(fingerprints) < 2:
        return float("nan")
    return float(pdist(np.asarray(fingerprints)).mean())


def frechet_distance(x, y) -> float:
    """|mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), square roots by scipy `sqrtm`,
    real part (Sultanov et al., JCIM 2023). NaN with fewer than two rows on a side."""
    import warnings

    import numpy as np
    from scipy.linalg import sqrtm

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    c1, c2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    with warnings.catch_warnings():
        # fingerprint covariances are singular (constant features): sqrtm warns, the real part is still used
        warnings.simplefilter("ignore")
        half = np.real(sqrtm(c1))
        cross = np.real(sqrtm(half @ c2 @ half))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * cross))
