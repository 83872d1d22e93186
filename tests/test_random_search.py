"""The random_search baseline's own logic, run through the local runtime."""

import pandas as pd

from orchestrator import models
from orchestrator.collect import collect
from orchestrator.executors.local import ShardPolicy, run_shards
from orchestrator.plan import plan
from orchestrator.runs import RunConfig
from orchestrator.runtimes.local import LocalRuntime
from orchestrator.structures import parse_cif
from schemas import Task


def run(tmp_path, name, **options):
    card = models.get("random_search")
    config = RunConfig(model="random_search", dataset="mini", split="test", task=Task.csp, limit=2,
                       options=options, seed=1)
    r, _ = plan(config, card, tmp_path / name)
    run_shards(r, LocalRuntime(), card, ShardPolicy(retries=0), progress=False)
    return collect(r)


def test_structures_have_the_target_composition_and_symmetry(home, tmp_path):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    frame = run(tmp_path, "plain", space_groups=[221, 225, 229])
    assert (frame["status"] == "accepted").all()
    assert frame["composition_match"].all() and frame["num_atoms_match"].all()
    for cif in frame["cif"]:
        assert SpacegroupAnalyzer(parse_cif(cif), symprec=0.01).get_space_group_number() in (221, 225, 229)


def test_incompatible_space_groups_fail_with_a_reason(home, tmp_path):
    frame = run(tmp_path, "none", space_groups=[230])  # Ia-3d cannot hold 5 or 2 atoms
    assert set(frame["reason"]) == {"model_failed"}
    assert frame["message"].str.contains("no space group is compatible").all()


def test_chgnet_relaxation_keeps_the_lowest_of_trials(home, tmp_path):
    plain = run(tmp_path, "plain", trials=2)
    relaxed = run(tmp_path, "relaxed", relax=True, trials=2, relax_steps=15, fmax=0.5)
    assert (relaxed["status"] == "accepted").all()
    assert not pd.Series(plain["cif"]).equals(pd.Series(relaxed["cif"]))
    assert (relaxed["seconds"] > plain["seconds"]).all()
