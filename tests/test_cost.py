"""orchestrator.cost: when samples became available, success against cost, the @k curve."""

import math

import pandas as pd
import pytest

from orchestrator import cost


def table(rows, columns=("target_id", "sample_index", "cpu_seconds", "energy_evaluations", "found_cpu_seconds",
                         "found_evaluations")):
    return pd.DataFrame(rows, columns=list(columns))


# a search (found_* recorded) on targets a, b; a generative-like run (no found_*) on c
SAMPLES = table([
    ("a", 0, 5.0, 50, 8.0, 80), ("a", 1, 5.0, 50, 2.0, 20),
    ("b", 0, 5.0, 50, 9.0, 90), ("b", 1, 5.0, 50, 10.0, 100),
    ("c", 0, 1.0, 0, None, None), ("c", 1, 3.0, 0, None, None),
])
MATCHED = pd.DataFrame({"target_id": ["a", "a", "b", "b", "c", "c"], "sample_index": [0, 1, 0, 1, 0, 1],
                        "matched": [True, True, False, False, False, True]})


def test_availability_is_the_search_cost_when_found_else_the_cumulated_cost():
    costs = cost.sample_costs(SAMPLES).set_index(["target_id", "sample_index"])
    assert costs.loc[("a", 1), "available_compute_seconds"] == 2.0
    assert costs.loc[("c", 0), "available_compute_seconds"] == 1.0
    assert costs.loc[("c", 1), "available_compute_seconds"] == 4.0  # after sample 0
    assert costs.loc[("b", 0), "available_energy_evaluations"] == 90


def test_gpu_seconds_replace_cpu_seconds_on_the_compute_axis():
    samples = SAMPLES.assign(gpu_seconds=[1.0] * 6)
    assert (cost.sample_costs(samples)["compute_seconds"] == 1.0).all()


def test_success_curve_counts_each_target_once_at_its_first_match():
    costs = cost.sample_costs(SAMPLES)
    xs, ys = cost.success_curve(costs, MATCHED, "compute_seconds", targets=4)
    assert xs == [0.0, 2.0, 2.0, 4.0, 4.0, 10.0] and ys == [0.0, 0.0, 0.25, 0.25, 0.5, 0.5]
    firsts = cost.first_match_cost(costs, MATCHED, "energy_evaluations")
    assert firsts.to_dict() == {"a": 20.0, "c": 0.0}


def test_match_at_k_is_the_at_k_curve_over_all_targets():
    assert cost.match_at_k(MATCHED, targets=4, k=2) == [0.25, 0.5]
    assert cost.match_at_k(MATCHED.iloc[0:0], targets=4, k=1) == [0.0]


def test_totals_per_target_count_every_target():
    totals = cost.totals(cost.sample_costs(SAMPLES), targets=4)
    assert totals["total_cpu_seconds"] == 24.0 and totals["cpu_seconds_per_target"] == 6.0
    assert totals["total_gpu_seconds"] is None and totals["gpu_seconds_per_target"] is None


def test_runs_without_recorded_costs_are_told_apart():
    old = pd.DataFrame({"target_id": ["a"], "sample_index": [0], "seconds": [1.0]})
    assert not cost.recorded(old) and cost.recorded(SAMPLES)
    assert math.isnan(cost.sample_costs(old)["available_compute_seconds"].iloc[0])


@pytest.mark.parametrize("axis", list(cost.AXES))
def test_a_run_that_matched_nothing_has_a_flat_curve(axis):
    xs, ys = cost.success_curve(cost.sample_costs(SAMPLES), MATCHED.assign(matched=False), axis, targets=3)
    assert set(ys) == {0.0} and xs[-1] > 0
