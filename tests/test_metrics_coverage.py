"""Coverage, distributions and Fréchet distance: hand-worked cases and invariances."""

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from orchestrator.metrics.coverage import cdvae_coverage, nearest, paired_coverage
from orchestrator.metrics.distribution import (
    SubsetError,
    frechet_distance,
    mean_pairwise_distance,
    subset_indices,
    wdist,
)

# two generated crystals (a third and a fourth have no fingerprints), three reference crystals
GEN_S = np.array([[0.0, 0.0], [1.0, 0.0]])
GEN_C = np.array([[0.0], [10.0]])
REF_S = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
REF_C = np.array([[10.0], [0.0], [0.0]])


def test_coverage_by_hand():
    d = nearest(GEN_S, GEN_C, REF_S, REF_C, 0.2, 4.0)
    assert d.struct_recall.tolist() == pytest.approx([0.0, 1.0, np.hypot(4, 5)])
    assert d.comp_recall.tolist() == [0.0, 0.0, 0.0]
    values = cdvae_coverage(d, 0.2, 4.0, n_generated=4)
    # reference 0: nearest structure is generated 0, nearest composition generated 1 -> covered
    # (CDVAE takes the two minima independently), the others are too far in structure
    assert values["cov_recall"] == pytest.approx(1 / 3)
    assert values["cov_precision"] == pytest.approx(1 / 4)  # over all four requested, not the two kept
    assert values["amsd_recall"] == pytest.approx((0 + 1 + np.hypot(4, 5)) / 3)
    assert values["amsd_precision"] == pytest.approx((0 + 1) / 2)
    assert values["amcd_precision"] == pytest.approx(0.0)
    # one partner within both cut-offs: nobody
    assert paired_coverage(d, 4) == {"cov_recall_paired": 0.0, "cov_precision_paired": 0.0}


def test_blocks_give_the_same_minima_as_one_matrix(monkeypatch):
    from scipy.spatial.distance import cdist

    from orchestrator.metrics import coverage

    rng = np.random.default_rng(0)
    gen_s, gen_c, ref_s, ref_c = (rng.normal(size=(n, 3)) for n in (50, 50, 40, 40))
    monkeypatch.setattr(coverage, "BLOCK", 7)
    d = nearest(gen_s, gen_c, ref_s, ref_c, 1.0, 1.0)
    assert np.array_equal(d.struct_recall, cdist(gen_s, ref_s).min(axis=0))
    assert np.array_equal(d.comp_precision, cdist(gen_c, ref_c).min(axis=1))
    both = (cdist(gen_s, ref_s) <= 1.0) & (cdist(gen_c, ref_c) <= 1.0)
    assert np.array_equal(d.paired_recall, both.any(axis=0))


def test_a_set_covers_itself():
    d = nearest(REF_S, REF_C, REF_S, REF_C, 0.2, 4.0)
    values = {**cdvae_coverage(d, 0.2, 4.0, 3), **paired_coverage(d, 3)}
    assert values["cov_recall"] == values["cov_precision"] == values["cov_recall_paired"] == 1.0
    assert values["amsd_recall"] == values["amcd_precision"] == 0.0


def test_subset_is_numpy_randomstate_choice_and_fewer_is_an_error():
    assert subset_indices(1500, 1000, seed=3).tolist() == np.random.RandomState(3).choice(1500, 1000, False).tolist()
    with pytest.raises(SubsetError, match="999/1000"):
        subset_indices(999)
    assert subset_indices(4, allow_fewer=True).tolist() == [0, 1, 2, 3]


def test_distribution_numbers_by_hand():
    assert wdist([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert wdist([1.0], [3.0]) == 2.0
    assert wdist([1, 2, 3], [2, 3, 4]) == pytest.approx(wasserstein_distance([1, 2, 3], [2, 3, 4]))
    assert mean_pairwise_distance([[0, 0], [3, 4], [0, 0]]) == pytest.approx((5 + 0 + 5) / 3)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shifted = frechet_distance(x, x + np.array([2.0, 0.0, 0.0]))
    assert shifted == pytest.approx(4.0, rel=1e-6)  # only |mu1 - mu2|^2 remains
    # covariances I and 4I in 3 dimensions: Tr(I + 4I - 2 (I 4I I)^1/2) = Tr(I) = 3
    y = rng.normal(size=(200_000, 3))
    assert frechet_distance(y, 2 * y) == pytest.approx(3.0, rel=1e-2)
