import json

import pytest
from pydantic import ValidationError

from schemas import CONTRACT_VERSION, Manifest, ModelCard, SampleRequest, Target, TrainRequest, export
from schemas.errors import format_errors


def test_committed_json_schemas_match_the_models():
    assert export.stale() == [], "run `python -m schemas.export` and commit schemas/json"


def test_stale_detects_an_edited_file(tmp_path):
    export.write(tmp_path)
    assert export.stale(tmp_path) == []
    path = tmp_path / "manifest.schema.json"
    path.write_text(path.read_text().replace('"title"', '"Title"', 1))
    (tmp_path / "old.schema.json").write_text("{}")
    assert export.stale(tmp_path) == ["manifest.schema.json", "old.schema.json"]


def test_schema_files_carry_the_contract_version():
    for name, text in export.render().items():
        assert f"/{CONTRACT_VERSION}/" in json.loads(text)["$id"], name


def test_csp_request_needs_compositions_and_unique_ids():
    with pytest.raises(ValidationError, match="csp targets need a composition"):
        SampleRequest(task="csp", targets=[Target(id="a")])
    with pytest.raises(ValidationError, match="unique"):
        SampleRequest(task="generate", targets=[Target(id="a"), Target(id="a")])
    request = SampleRequest(task="csp", targets=[Target(id="a", composition={"Na": 1, "Cl": 1}, samples=3)])
    assert request.targets[0].num_atoms == 2
    assert request.requested() == [("a", 0), ("a", 1), ("a", 2)]


def test_target_atoms_must_add_up_and_ids_are_safe():
    with pytest.raises(ValidationError, match="sums to 2"):
        Target(id="a", composition={"Na": 1, "Cl": 1}, num_atoms=4)
    with pytest.raises(ValidationError):
        Target(id="../etc", composition={"Na": 1})


def test_unknown_keys_are_rejected_with_a_json_path():
    with pytest.raises(ValidationError) as info:
        SampleRequest.model_validate({"task": "csp", "targets": [{"id": "a", "composition": {"Na": 1}, "sampels": 2}]})
    assert "$.targets[0].sampels: Extra inputs are not permitted" in format_errors(info.value)


def test_manifest_records_need_payload_or_message():
    base = {"contract_version": "1.0", "task": "csp", "seed": 0, "model": {"name": "m"},
            "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"}}
    ok = {"target_id": "a", "sample_index": 0, "status": "ok", "seconds": 1.0}
    with pytest.raises(ValidationError, match="needs a cif path or a wyckoff"):
        Manifest.model_validate({**base, "samples": [ok]})
    with pytest.raises(ValidationError, match="needs a message"):
        Manifest.model_validate({**base, "samples": [{**ok, "status": "failed"}]})
    wyckoff = {"space_group": 225, "sites": [{"element": "Na", "letter": "a"}]}
    manifest = Manifest.model_validate({**base, "samples": [{**ok, "wyckoff": wyckoff}]})
    assert manifest.samples[0].wyckoff.space_group == 225


def test_a_1_0_manifest_stays_valid_and_1_1_adds_cost_fields():
    old = {"contract_version": "1.0", "task": "csp", "seed": 0, "model": {"name": "m"},
           "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"},
           "samples": [{"target_id": "a", "sample_index": 0, "status": "ok", "cif": "a.cif", "seconds": 1.0}]}
    assert Manifest.model_validate(old).samples[0].cost is None
    new = json.loads(json.dumps(old))
    new["contract_version"] = CONTRACT_VERSION
    new["runtime"].update(hardware={"cpu_model": "x", "logical_cpus": 2, "usable_cpus": 1.0, "memory_gb": 23.4},
                          cpu_seconds=12.5, load_start=[1.0, 2.0, 3.0], load_end=[2.0, 2.0, 3.0])
    new["samples"][0]["cost"] = {"cpu_seconds": 3.2, "energy_evaluations": 120, "relax_seconds": 2.9,
                                 "found_after": {"seconds": 1.0, "cpu_seconds": 1.1, "energy_evaluations": 40}}
    manifest = Manifest.model_validate(new)
    assert manifest.samples[0].cost.found_after.energy_evaluations == 40
    assert manifest.runtime.hardware.usable_cpus == 1.0
    new["samples"][0]["cost"]["energy_evaluations"] = -1
    with pytest.raises(ValidationError):
        Manifest.model_validate(new)
    new["samples"][0]["cost"] = {"cpu_seconds": 1, "flops": 3}
    with pytest.raises(ValidationError, match="flops"):
        Manifest.model_validate(new)


def test_a_budget_names_evaluations_or_seconds_per_target():
    targets = [{"id": "a", "composition": {"Na": 1}}]
    request = SampleRequest.model_validate({"task": "csp", "budget": {"evaluations": 500}, "targets": targets})
    assert request.budget.evaluations == 500 and request.budget.seconds is None
    with pytest.raises(ValidationError):
        SampleRequest.model_validate({"task": "csp", "budget": {"evaluations": 0}, "targets": targets})
    assert "budget" not in SampleRequest(task="csp", targets=targets).model_dump(exclude_none=True)


def test_model_card_rules():
    card = {"name": "m", "description": "d", "family": "gan", "tasks": ["csp"], "licence": "MIT"}
    assert ModelCard.model_validate(card).image_name == "gencsp/m"
    with pytest.raises(ValidationError, match="also requires the space group"):
        ModelCard.model_validate({**card, "requires": ["wyckoff"]})
    with pytest.raises(ValidationError):
        ModelCard.model_validate({**card, "family": "magic"})


def test_train_request_needs_a_train_split():
    with pytest.raises(ValidationError, match="include 'train'"):
        TrainRequest(dataset="perov_5", splits={"val": "/data/val.csv"})
    assert TrainRequest(dataset="perov_5", splits={"train": "/data/train.csv"}).output_dir == "/io/out"


def test_every_model_folder_has_a_valid_card():
    from orchestrator import models

    cards = models.cards()
    assert {"random_search", "replay"} <= set(cards)
    for name, card in cards.items():
        assert card.name == name
        assert (models.folder(name) / "adapter.py").is_file(), name


def test_a_variant_names_its_image_and_sets_its_own_time_per_sample():
    from orchestrator.executors.local import ShardPolicy
    from orchestrator.models import get

    card = get("cdvae")
    cpu, cuda = card.with_variant("cpu"), card.with_variant("cuda")
    assert cpu.image_name.endswith("cdvae:cpu") and cuda.image_name.endswith("cdvae:cuda")
    assert cuda.resources.seconds_per_sample == card.resources.seconds_per_sample
    assert cpu.resources.seconds_per_sample == card.variants["cpu"].seconds_per_sample > card.resources.seconds_per_sample
    assert ShardPolicy.timeout_for_samples(cpu, 20) > ShardPolicy.timeout_for_samples(cuda, 20)
