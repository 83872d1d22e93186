"""Stability metrics over every requested sample, thresholds named in the output."""

import math

import pandas as pd
import pytest

from dft.stability import (
    energy_ranking,
    energy_ranks,
    join_samples,
    relaxation_rmsd,
    stability_rates,
    sun_rates,
    unique_from_groups,
)


@pytest.fixture
def table():
    # six requested samples of two targets; one rejected (no energy), one relaxed without a reference
    samples = pd.DataFrame({"target_id": ["a", "a", "a", "b", "b", "b"], "sample_index": [0, 1, 2, 0, 1, 2],
                            "status": ["accepted"] * 5 + ["rejected"]})
    stability = pd.DataFrame({"target_id": ["a", "a", "a", "b", "b"], "sample_index": [0, 1, 2, 0, 1],
                              "status": ["ok"] * 5, "e_above_hull": [-0.02, 0.0, 0.08, 0.3, math.nan],
                              "e_final": [-5.0, -5.2, -4.9, -3.0, -3.1], "rmsd": [0.1, math.nan, 0.3, 0.2, 0.2]})
    joined = join_samples(samples, stability)
    joined["unique_group"] = pd.array([0, 0, 1, 2, 3, pd.NA], dtype="Int64")
    joined["novel"] = [True, True, False, True, True, None]
    joined["matched"] = [False, True, False, True, False, False]
    return joined


def test_rates_count_every_requested_sample(table):
    assert list(table["status"]) == ["accepted"] * 5 + ["rejected"]  # the samples' status wins the join
    rates = stability_rates(table)
    assert rates["stable_rate"] == pytest.approx(2 / 6) and rates["metastable_rate"] == pytest.approx(3 / 6)
    assert rates["samples"] == 6 and rates["with_energy_count"] == 4
    assert rates["stable_threshold_ev_per_atom"] == 0.0 and rates["metastable_threshold_ev_per_atom"] == 0.1
    strict = stability_rates(table, stable=-0.01, metastable=0.05)
    assert strict["stable_rate"] == pytest.approx(1 / 6) and strict["stable_threshold_ev_per_atom"] == -0.01


def test_sun_and_metasun(table):
    table["unique"] = unique_from_groups(table)
    assert table["unique"].tolist() == [True, False, True, True, True, False]
    rates = sun_rates(table)
    # stable & unique & novel: only a/0; metastable adds nothing (a/2 is not novel, a/1 not unique)
    assert rates["sun_count"] == 1 and rates["sun_rate"] == pytest.approx(1 / 6)
    assert rates["msun_count"] == 1 and rates["metastable_threshold_ev_per_atom"] == 0.1
    with pytest.raises(ValueError, match="need column"):
        sun_rates(table.drop(columns=["novel"]))


def test_relaxation_rmsd_and_energy_ranking(table):
    rmsd = relaxation_rmsd(table)
    assert rmsd["rmsd_mean"] == pytest.approx(0.2) and rmsd["rmsd_count"] == 4
    ranks = energy_ranks(table).set_index("target_id")
    # a: lowest energy is a/1, which matched; b: the match b/0 is second after b/1
    assert bool(ranks.loc["a", "lowest_is_match"]) and ranks.loc["a", "best_match_rank"] == 1
    assert not ranks.loc["b", "lowest_is_match"] and ranks.loc["b", "best_match_rank"] == 2
    summary = energy_ranking(table)
    assert summary["lowest_is_match_rate"] == 0.5 and summary["best_match_rank_mean"] == 1.5
    assert summary["targets_with_match"] == 2
