"""The three search baselines (random_search with relaxation, evolutionary, pso) at equal budget, local runtime.

Real CHGNet relaxations on the first two `mini` targets (SrTiO3, CsCl), 120 energy
evaluations per target: the searches must stop there, record what they spent, and
answer each target with distinct structures.
"""

from dataclasses import asdict

import pandas as pd
import pytest

from conftest import module_home
from orchestrator import models
from orchestrator.collect import collect
from orchestrator.executors.local import ShardPolicy, run_shards
from orchestrator.hashing import sha256_json
from orchestrator.plan import plan
from orchestrator.runs import RunConfig
from orchestrator.runtimes.local import LocalRuntime
from schemas import Task

BUDGET = 120
MODELS = {"random_search": {"relax": True}, "evolutionary": {}, "pso": {"swarm_size": 3}}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = {}
    with module_home(tmp_path_factory, "search") as (root, _):
        for model, options in MODELS.items():
            card = models.get(model)
            config = RunConfig(model=model, dataset="mini", split="test", task=Task.csp, limit=2, samples_per_target=2,
                               options=options, budget_evaluations=BUDGET)
            run, _ = plan(config, card, root / "runs")
            run_shards(run, LocalRuntime(), card, ShardPolicy(retries=0), progress=False)
            out[model] = (run, collect(run))
        yield out


@pytest.mark.parametrize("model", MODELS)
def test_a_search_stops_at_the_budget_and_records_its_cost(searched, model):
    run, frame = searched[model]
    assert run.shards()[0].request().budget.evaluations == BUDGET
    assert frame["energy_evaluations"].notna().all() and frame["cpu_seconds"].gt(0).all()
    spent = frame.groupby("target_id")["energy_evaluations"].sum()
    assert ((spent > BUDGET / 2) & (spent <= BUDGET + 1)).all(), spent  # shares are rounded per sample
    accepted = frame[frame["status"] == "accepted"]
    assert accepted["found_evaluations"].le(BUDGET).all() and accepted["relax_seconds"].gt(0).all()
    assert set(accepted["target_id"]) == {"mini-00-SrTiO3", "mini-01-CsCl"}


@pytest.mark.parametrize("model", MODELS)
def test_samples_of_a_target_are_distinct_and_lowest_energy_first(searched, model):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from orchestrator.structures import parse_cif

    _, frame = searched[model]
    failed = frame[frame["status"] != "accepted"]
    assert failed["message"].str.contains("the search found 1 distinct structure").all()
    for _, group in frame[frame["status"] == "accepted"].groupby("target_id"):
        structures = [parse_cif(text) for text in group.sort_values("sample_index")["cif"]]
        assert all(not StructureMatcher().fit(a, b) for i, a in enumerate(structures) for b in structures[i + 1:])
        assert (group["composition_match"] & group["num_atoms_match"]).all()


def test_runs_made_before_budgets_keep_their_ids():
    config = RunConfig(model="m", dataset="mini", split="test", task=Task.csp)
    old = {k: v for k, v in asdict(config).items() if not k.startswith("budget_")}
    assert config.key() == sha256_json(old)[:10]
    assert RunConfig(**{**asdict(config), "budget_evaluations": 10}).key() != config.key()


def test_budget_options_must_be_positive(home, capsys):
    from orchestrator.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--model", "pso", "--budget-evaluations", "0"])
    assert "must be a positive integer" in capsys.readouterr().err


def test_the_budget_reaches_the_request_only_when_given(home, tmp_path):
    card = models.get("pso")
    config = RunConfig(model="pso", dataset="mini", split="test", task=Task.csp, limit=1)
    run, _ = plan(config, card, tmp_path)
    assert "budget" not in run.shards()[0].request_path.read_text()
    assert pd.isna(pd.Series([run.config.budget_seconds])).all() and run.config.budget() is None
