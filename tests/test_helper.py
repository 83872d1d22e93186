"""The stdlib-only helper copied into every image."""

import ast
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, nacl_cif
from orchestrator.validate import validate_shard
from schemas import Manifest, SampleRequest, Target

HELPER = ROOT / "containers" / "common" / "gencsp_helper.py"
# Modules of the Python 3.8 standard library the helper may use.
STDLIB_38 = {"contextlib", "datetime", "hashlib", "json", "os", "platform", "socket", "sys", "tempfile", "time",
             "traceback"}


def test_helper_parses_as_python_38_and_imports_only_the_stdlib():
    tree = ast.parse(HELPER.read_text(), feature_version=(3, 8))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= STDLIB_38, imported - STDLIB_38
    # No annotations: `list[int]` and friends fail at run time on 3.8.
    assert not any(isinstance(n, ast.AnnAssign) or getattr(n, "returns", None) for n in ast.walk(tree))


def test_a_38_only_syntax_error_would_be_caught():
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1: pass\n", feature_version=(3, 8))


def write_request(folder, targets, **extra):
    request = SampleRequest(task="csp", targets=targets, **extra)
    path = folder / "request.json"
    path.write_text(request.model_dump_json())
    return request, path


def run_adapter(tmp_path, body, request_path, env=None):
    adapter = tmp_path / "adapter.py"
    adapter.write_text("import sys\nimport gencsp_helper as g\nCIF = %r\n" % nacl_cif() + textwrap.dedent(body)
                       + "\nif __name__ == '__main__':\n    g.main(sample, model={'name': 'toy'})\n")
    out = tmp_path / "out"
    environment = {"PYTHONPATH": str(HELPER.parent), "PATH": "/usr/bin:/bin", **(env or {})}
    proc = subprocess.run([sys.executable, str(adapter), "sample", str(request_path), str(out)],
                          capture_output=True, text=True, env=environment, timeout=60)
    return proc, out


NACL = [Target(id="nacl", composition={"Na": 1, "Cl": 1}, samples=2),
        Target(id="kcl", composition={"K": 1, "Cl": 1}, samples=2)]


def test_adapter_output_validates(tmp_path):
    request, path = write_request(tmp_path, NACL)
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            for target, index in session.requested():
                with session.slot(target, index) as slot:
                    slot.cif(CIF)
    """, path)
    assert proc.returncode == 0, proc.stderr
    report = validate_shard(out, request)
    assert report.counts() == {"accepted": 4}
    assert report.manifest.complete and report.manifest.model.name == "toy"
    assert all(row["seconds"] >= 0 for row in report.rows)
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_crash_after_partial_output_still_answers_every_sample(tmp_path):
    request, path = write_request(tmp_path, NACL)
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            session.save_cif("nacl", 0, CIF)
            session.save_cif("nacl", 1, CIF)
            raise MemoryError("CUDA out of memory")
    """, path)
    assert proc.returncode == 1
    manifest = Manifest.model_validate_json((out / "manifest.json").read_text())
    statuses = {(r.target_id, r.sample_index): (r.status, r.message) for r in manifest.samples}
    assert statuses[("nacl", 0)] == ("ok", None)
    assert statuses[("kcl", 1)] == ("failed", "adapter crashed: MemoryError: CUDA out of memory")
    assert validate_shard(out, request).counts() == {"accepted": 2, "rejected: model_failed": 2}


def test_an_exception_in_a_slot_fails_that_sample_only(tmp_path):
    request, path = write_request(tmp_path, NACL)
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            for target, index in session.requested():
                with session.slot(target, index) as slot:
                    if target["id"] == "kcl" and index == 1:
                        raise ValueError("no valid structure")
                    if target["id"] == "kcl":
                        continue  # produced nothing
                    slot.cif(CIF)
    """, path)
    assert proc.returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    messages = {(r["target_id"], r["sample_index"]): r.get("message") for r in manifest["samples"]}
    assert messages[("kcl", 1)] == "ValueError: no valid structure"
    assert messages[("kcl", 0)] == "the adapter produced nothing for this sample"
    assert messages[("nacl", 0)] is None


def test_systematic_failure_stops_the_adapter(tmp_path):
    request, path = write_request(tmp_path, [Target(id="a", composition={"Na": 1}, samples=80)])
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            for target, index in session.requested():
                with session.slot(target, index) as slot:
                    raise KeyError("checkpoint key missing")
    """, path)
    assert proc.returncode == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["samples"]) == 80
    assert sum(r["message"].startswith("KeyError") for r in manifest["samples"]) == 50
    assert "stopping: 50 failures in a row" in manifest["samples"][-1]["message"]


def test_samples_rejected_by_the_models_own_filters_do_not_stop_it(tmp_path):
    """80 rejections in a row are a result (an untrained model), not a malfunction; a crash after them still stops."""
    request, path = write_request(tmp_path, [Target(id="a", composition={"Na": 1}, samples=80),
                                             Target(id="b", composition={"Na": 1}, samples=60)])
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            for target, index in session.requested():
                if target["id"] == "a":
                    session.fail("a", index, "rejected by the model's filters", rejected=True)
                else:
                    session.fail("b", index, "checkpoint key missing")
    """, path)
    assert proc.returncode == 1
    messages = [r["message"] for r in json.loads((out / "manifest.json").read_text())["samples"]]
    assert messages[:80] == ["rejected by the model's filters"] * 80
    assert messages[80:130] == ["checkpoint key missing"] * 50 and "stopping: 50 failures" in messages[130]


def test_slots_record_cpu_seconds_and_what_the_adapter_counted(tmp_path):
    request, path = write_request(tmp_path, NACL[:1])
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            for target, index in session.requested():
                with session.slot(target, index) as slot:
                    sum(i * i for i in range(300000 * (index + 1)))  # CPU work
                    slot.cost["energy_evaluations"] = 7
                    if index == 1:
                        raise ValueError("no structure")
                    slot.cif(CIF)
    """, path)
    assert proc.returncode == 0, proc.stderr
    manifest = Manifest.model_validate_json((out / "manifest.json").read_text())
    ok, failed = manifest.samples
    assert ok.cost.cpu_seconds > 0 and ok.cost.energy_evaluations == 7 and ok.cost.gpu_seconds is None
    assert failed.status == "failed" and failed.cost.cpu_seconds > 0  # failures cost too
    runtime = manifest.runtime
    assert runtime.cpu_seconds >= ok.cost.cpu_seconds + failed.cost.cpu_seconds
    assert runtime.hardware.logical_cpus >= 1 and runtime.hardware.usable_cpus > 0 and runtime.hardware.memory_gb > 0
    assert len(runtime.load_start) == len(runtime.load_end) == 3


def test_a_search_stops_at_its_budget_and_shares_its_cost(tmp_path):
    from schemas import Budget

    request, path = write_request(tmp_path, [Target(id="nacl", composition={"Na": 1, "Cl": 1}, samples=3)],
                                  budget=Budget(evaluations=40))
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            for target in session.targets:
                with session.search(target) as meter:
                    found = []
                    while not meter.exhausted():
                        meter.count(15 if meter.remaining_evaluations() >= 15 else meter.remaining_evaluations())
                        found.append((CIF, meter.progress()))
                    meter.found = found[:2]
                    sys.stderr.write("budget %r evaluations %d;" % (session.budget, meter.evaluations))
    """, path)
    assert proc.returncode == 0, proc.stderr
    assert "budget {'evaluations': 40} evaluations 40" in proc.stderr
    samples = Manifest.model_validate_json((out / "manifest.json").read_text()).samples
    assert [s.status for s in samples] == ["ok", "ok", "failed"]
    assert "the search found 2 distinct structure(s), 3 were requested" in samples[2].message
    assert [s.cost.found_after.energy_evaluations for s in samples[:2]] == [15, 30]
    assert sum(s.cost.energy_evaluations for s in samples) == 39  # 40 shared by 3, rounded per sample
    assert samples[2].cost.found_after is None


def test_an_exception_in_a_search_fails_all_its_samples_with_their_cost(tmp_path):
    request, path = write_request(tmp_path, NACL)
    proc, out = run_adapter(tmp_path, """
        def sample(session):
            for target in session.targets:
                with session.search(target) as meter:
                    meter.count(10)
                    if target["id"] == "kcl":
                        raise RuntimeError("potential diverged")
                    meter.found = [(CIF, meter.progress())] * 2
    """, path)
    assert proc.returncode == 0, proc.stderr
    samples = Manifest.model_validate_json((out / "manifest.json").read_text()).samples
    kcl = [s for s in samples if s.target_id == "kcl"]
    assert [s.message for s in kcl] == ["RuntimeError: potential diverged"] * 2
    assert [s.cost.energy_evaluations for s in kcl] == [5, 5]


def test_wrong_contract_version_is_refused(tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"contract_version": "2.0", "task": "csp", "targets": []}))
    proc, out = run_adapter(tmp_path, "def sample(session):\n    pass\n", path)
    assert proc.returncode == 2
    assert "contract version '2.0'" in proc.stderr
    assert not (out / "manifest.json").exists()


def test_requests_for_unrequested_samples_are_refused(tmp_path):
    request, path = write_request(tmp_path, NACL)
    proc, out = run_adapter(tmp_path, "def sample(session):\n    session.save_cif('nacl', 7, CIF)\n", path)
    assert proc.returncode == 1
    assert "sample 7 of target nacl was not requested" in proc.stderr


def test_seeds_do_not_depend_on_sharding_and_paths_map(tmp_path, monkeypatch):
    sys.path.insert(0, str(HELPER.parent))
    try:
        import gencsp_helper as g
    finally:
        sys.path.pop(0)
    assert g.derived_seed(0, "nacl", 1) == g.derived_seed(0, "nacl", 1) != g.derived_seed(1, "nacl", 1)
    _, path = write_request(tmp_path, NACL, data={"train": "/data/perov_5/train.csv"})
    monkeypatch.setenv("GENCSP_PATH_MAP", json.dumps({"/data": "/home/me/cache"}))
    session = g.Session(str(path), str(tmp_path / "out"), {"name": "toy"})
    assert session.data_path("train") == "/home/me/cache/perov_5/train.csv"
    assert session.path("/database/x") == "/database/x"
    with pytest.raises(g.ContractError, match="'val' was not mounted"):
        session.data_path("val")


def test_partial_manifest_is_flushed_while_sampling(tmp_path, monkeypatch):
    sys.path.insert(0, str(HELPER.parent))
    import gencsp_helper as g

    sys.path.pop(0)
    monkeypatch.setattr(g, "FLUSH_EVERY_SECONDS", 0.0)
    _, path = write_request(tmp_path, NACL)
    session = g.Session(str(path), str(tmp_path / "out"), {"name": "toy"})
    session.save_cif("nacl", 0, nacl_cif())
    partial = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert partial["complete"] is False and len(partial["samples"]) == 1
    Manifest.model_validate(partial)


def test_the_process_leaves_once_the_manifest_is_written(tmp_path):
    """Output is flushed, but the interpreter's teardown (atexit hooks here) is skipped."""
    import time

    request, path = write_request(tmp_path, NACL[:1])
    start = time.monotonic()
    proc, out = run_adapter(tmp_path, """
        import atexit, time
        atexit.register(time.sleep, 30)  # stands for a slow teardown of heavy libraries
        def sample(session):
            sys.stdout.write("sampled, no newline")  # buffered: a pipe is not a terminal
            for target, index in session.requested():
                with session.slot(target, index) as slot:
                    slot.cif(CIF)
    """, path)
    assert proc.returncode == 0 and proc.stdout == "sampled, no newline", proc
    assert time.monotonic() - start < 20
    assert validate_shard(out, request).counts() == {"accepted": 2}
