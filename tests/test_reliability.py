"""Regressions of issue 18: a hostile model, a careless user, two benches at once (each failed before its fix)."""

import json
import os
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

import hostile
from conftest import MIRROR, ROOT, nacl_cif, slow_cif
from orchestrator.cli import build_parser, main
from orchestrator.collect import collect
from orchestrator.executors.local import ShardPolicy, process_shard
from orchestrator.plan import plan
from orchestrator.runs import RunConfig
from orchestrator.runtimes.local import LocalRuntime
from orchestrator.validate import Limits, ManifestError, validate_shard
from schemas import SampleRequest, Target, Task

MINI = ["mini-00-SrTiO3", "mini-01-CsCl", "mini-02-Li2O", "mini-03-Si", "mini-04-VO2", "mini-05-BaTiO3"]


def shard_out(tmp_path, records, files, complete=True):
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(text)
    body = {"contract_version": "1.0", "task": "csp", "seed": 0, "complete": complete, "model": {"name": "toy"},
            "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"}, "samples": records}
    (out / "manifest.json").write_text(json.dumps(body))
    return out


def request(ids, samples=1):
    return SampleRequest(task="csp", targets=[Target(id=i, composition={"Na": 1, "Cl": 1}, samples=samples)
                                              for i in ids])


def hostile_run(tmp_path, tree, **config):
    """A run of the hostile model on mini (6 targets, one shard) and its runtime."""
    containers = hostile.install(tmp_path / "containers")
    base = dict(model="hostile", dataset="mini", split="test", task=Task.csp, shard_size=10,
                options={"tree": tree})
    run, _ = plan(RunConfig(**{**base, **config}), hostile.card(), tmp_path / "runs")
    return run, LocalRuntime(containers=containers)


# 1 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["thread", "main"])
def test_a_slow_cif_times_out_in_any_thread(tmp_path, where):
    out = shard_out(tmp_path, [hostile.ok("t", 0, "slow.cif")], {"slow.cif": slow_cif()})
    result = {}

    def check():
        start = time.monotonic()
        report = validate_shard(out, request(["t"]), Limits(parse_seconds=1.0))
        result.update(row=report.rows[0], seconds=time.monotonic() - start)

    if where == "thread":
        worker = threading.Thread(target=check)
        worker.start()
        worker.join(60)
    else:
        check()
    assert result["row"]["reason"] == "timeout", result["row"]["message"]
    assert result["seconds"] < 15  # 1 s of parsing plus a worker start (slow on a loaded node); both blocks: 13 s idle


# 2 -------------------------------------------------------------------------------------------


def test_bad_records_become_rejected_samples_and_the_shard_stands(home, tmp_path):
    records = [hostile.ok(MINI[0], 0, "structures/good.cif"), hostile.ok(MINI[1], 0, "x" * 300 + ".cif"),
               hostile.ok(MINI[2], 0, "a\x00b.cif"), hostile.ok(MINI[3], 0, "\ud800.cif"),
               hostile.ok("bad\x00id", 0, "structures/good.cif"), hostile.ok("\udc80", 0, "structures/good.cif"),
               hostile.ok(MINI[4], 10**30, "structures/good.cif")]
    tree = [hostile.file("structures/good.cif", nacl_cif()), hostile.manifest(records)]
    run, runtime = hostile_run(tmp_path, tree)
    state = process_shard(run.shards()[0], runtime, hostile.card(), ShardPolicy(retries=0))
    assert state["status"] == "done", state.get("error")
    frame = collect(run)
    assert sorted(zip(frame["target_id"], frame["sample_index"], strict=True)) == [(t, 0) for t in MINI]
    rows = frame.set_index("target_id")
    assert rows.loc[MINI[0], "status"] == "accepted"
    assert {rows.loc[t, "reason"] for t in MINI[1:4]} <= {"bad_path", "missing_file"}
    assert rows.loc[MINI[4], "reason"] == rows.loc[MINI[5], "reason"] == "missing_record"
    assert any("not requested" in w for w in state["warnings"])


# 3 -------------------------------------------------------------------------------------------


def test_two_benches_started_together_share_the_run(home, tmp_path):
    command = [sys.executable, "-m", "orchestrator", "bench", "--model", "random_search", "--limit", "3",
               "--shard-size", "1", "--runtime", "local", "--no-evaluate", "--run-dir", str(tmp_path / "runs")]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    states = [json.loads(p.read_text()) for p in sorted(run_dir.glob("shards/*/state.json"))]
    assert [s["status"] for s in states] == ["done"] * 3
    assert [s["attempts"] for s in states] == [1, 1, 1]  # no shard ran twice
    assert main(["status", str(run_dir), "--no-queue"]) == 0
    assert len(pd.read_parquet(run_dir / "structures.parquet")) == 3


# 4 -------------------------------------------------------------------------------------------


def test_unrequested_records_are_warnings_not_rows(tmp_path):
    records = [hostile.ok("a", 0, "s.cif"), hostile.ok("a", 1, "s.cif"), hostile.ok("a", 2, "s.cif"),
               hostile.ok("zz", 0, "s.cif")]
    out = shard_out(tmp_path, records, {"s.cif": nacl_cif()})
    report = validate_shard(out, request(["a"], samples=2))
    assert [(r["target_id"], r["sample_index"], r["status"]) for r in report.rows] == [
        ("a", 0, "accepted"), ("a", 1, "accepted")]
    assert any("2 record(s) for samples not requested" in w for w in report.warnings)


# 5, 6 ----------------------------------------------------------------------------------------

BAD_VALUES = [("bench", "--limit", "0"), ("bench", "--limit", "-1"), ("bench", "--shard-size", "0"),
              ("bench", "--samples-per-target", "-2"), ("bench", "--batch-size", "0"), ("bench", "--timeout", "0"),
              ("bench", "--timeout", "-5"), ("bench", "--timeout", "nan"), ("bench", "--parse-seconds", "0"),
              ("validate", "--parse-seconds", "-1"), ("run-shard", "--timeout", "0")]


@pytest.mark.parametrize("command,option,value", BAD_VALUES)
def test_zero_and_negative_values_are_clear_errors(capsys, command, option, value):
    argv = {"bench": ["bench", "--model", "random_search"], "validate": ["validate", "out"],
            "run-shard": ["run-shard", "run", "0"]}[command] + [option, value]
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert option in capsys.readouterr().err


def test_a_model_is_a_name_never_a_path(home, tmp_path, capsys):
    from orchestrator import models

    for name in ("../containers/random_search", "random_search/../random_search", "/tmp/x", ".", ".."):
        with pytest.raises(models.ModelError, match="a model is a name"):
            models.get(name)
    assert main(["bench", "--model", "../containers/random_search", "--run-dir", str(tmp_path / "runs")]) == 1
    assert not (tmp_path / "containers").exists() and "a model is a name" in capsys.readouterr().err


# 7, 8 ----------------------------------------------------------------------------------------


def test_a_symlinked_manifest_is_not_followed_outside(tmp_path):
    outside = shard_out(tmp_path / "elsewhere", [hostile.ok("a", 0, "s.cif")], {"s.cif": nacl_cif()})
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").symlink_to(outside / "manifest.json")
    with pytest.raises(ManifestError, match="outside the output folder"):
        validate_shard(out, request(["a"]))


def test_a_deeply_nested_manifest_is_a_manifest_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ManifestError, match="nested"):
        validate_shard(out, request(["a"]))


# 9 -------------------------------------------------------------------------------------------


def _csv(path, rows, columns=("material_id", "cif")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def test_evaluate_refuses_inputs_that_would_give_wrong_numbers(tmp_path):
    from orchestrator.metrics.inputs import InputError, from_files

    cif = nacl_cif()
    reference = _csv(tmp_path / "ref.csv", [("a", cif), ("b", cif)])
    twice = _csv(tmp_path / "twice.csv", [("a", cif), ("a", cif)])
    predictions = _csv(tmp_path / "pred.csv", [("a", 0, cif), ("b", 0, cif)], ("target_id", "sample_index", "cif"))
    doubled = _csv(tmp_path / "doubled.csv", [("a", 0, cif), ("b", 0, cif)] * 2, ("target_id", "sample_index", "cif"))
    doubled_no_index = _csv(tmp_path / "doubled2.csv", [("a", cif), ("b", cif)] * 2, ("target_id", "cif"))
    words = _csv(tmp_path / "words.csv", [("a", "first", cif)], ("target_id", "sample_index", "cif"))
    seconds = _csv(tmp_path / "seconds.csv", [("a", 0, cif, "fast")], ("target_id", "sample_index", "cif", "seconds"))
    with pytest.raises(InputError, match=r"twice\.csv.*material_id 'a' appears 2 times"):
        from_files(predictions, "csp", str(twice), "perovskite")
    for path in (doubled, doubled_no_index):
        with pytest.raises(InputError, match=r"doubled2?\.csv.*row 3 repeats"):
            from_files(path, "csp", str(reference), "perovskite")
    with pytest.raises(InputError, match=r"words\.csv, row 1: sample_index 'first' is not an integer"):
        from_files(words, "csp", str(reference), "perovskite")
    with pytest.raises(InputError, match=r"seconds\.csv, row 1: seconds 'fast' is not a number"):
        from_files(seconds, "csp", str(reference), "perovskite")
    assert len(from_files(predictions, "csp", str(reference), "perovskite").predictions) == 2


def test_a_reference_of_unreadable_cifs_is_an_error(tmp_path):
    from orchestrator.metrics.context import Settings
    from orchestrator.metrics.evaluate import evaluate
    from orchestrator.metrics.inputs import InputError, from_files

    reference = _csv(tmp_path / "ref.csv", [("a", "not a cif"), ("b", "data_x\n")])
    predictions = _csv(tmp_path / "pred.csv", [("a", 0, nacl_cif())], ("target_id", "sample_index", "cif"))
    inputs = from_files(predictions, "csp", str(reference), "perovskite")
    with pytest.raises(InputError, match=r"ref\.csv.*none of its 2 CIFs could be read"):
        evaluate(inputs, "gencsp", Settings(workers=1, progress=False, cache=False, chgnet=False))


# smaller items -------------------------------------------------------------------------------


def test_a_models_stdout_is_capped_in_its_log(home, tmp_path, monkeypatch):
    from orchestrator.runtimes import base

    monkeypatch.setattr(base, "LOG_LIMIT_BYTES", 1 << 20)
    tree = [{"kind": "stdout", "bytes": 8 << 20}, hostile.manifest([])]
    run, runtime = hostile_run(tmp_path, tree)
    shard = run.shards()[0]
    process_shard(shard, runtime, hostile.card(), ShardPolicy(retries=0))
    size = shard.log_path.stat().st_size
    assert size < (1 << 20) + 100_000
    assert "bytes of output left out" in shard.log_path.read_text(errors="replace")


def test_after_a_timeout_samples_are_timed_out_not_missing(home, tmp_path):
    run, runtime = hostile_run(tmp_path, [], options={"tree": [], "sleep": 60})
    shard = run.shards()[0]
    state = process_shard(shard, runtime, hostile.card(), ShardPolicy(retries=0, timeout=2))
    assert state["status"] == "failed" and state["error"].startswith("timed out after 2 s")
    frame = collect(run)
    assert set(frame["reason"]) == {"timeout"} and frame["message"].str.startswith("timed out").all()


def test_downtime_between_a_kill_and_a_resume_is_not_wall_time(home, tmp_path):
    from orchestrator.atomic import write_json
    from orchestrator.metrics.cost_metrics import _shard_times

    run, _ = plan(RunConfig(model="random_search", dataset="mini", split="test", task=Task.csp, shard_size=2),
                  __import__("orchestrator.models").models.get("random_search"), tmp_path / "runs")
    spans = [("2026-01-01T10:00:00+00:00", "2026-01-01T10:00:10+00:00"),  # first session
             ("2026-01-01T10:00:05+00:00", "2026-01-01T10:00:20+00:00"),
             ("2026-01-02T09:00:00+00:00", "2026-01-02T09:00:30+00:00")]  # resumed the next day
    for shard, (start, end) in zip(run.shards(), spans, strict=True):
        write_json(shard.state_path, {"status": "done", "attempts": 1, "started": start, "updated": end})
    wall, summed = _shard_times(run)
    assert wall == 20 + 30 and summed == 10 + 15 + 30


def test_a_wyckoff_record_with_no_element_is_rejected(tmp_path):
    wyckoff = {"space_group": 225, "sites": [{"element": "Xx", "letter": "a"}, {"element": "Cl", "letter": "b"}]}
    record = {"target_id": "a", "sample_index": 0, "status": "ok", "wyckoff": wyckoff, "seconds": 0.1}
    report = validate_shard(shard_out(tmp_path, [record], {}), request(["a"]))
    assert report.rows[0]["reason"] == "unknown_element"


def test_a_fifo_named_cif_never_blocks_the_background_parser(tmp_path):
    from orchestrator.prevalidate import Prevalidator

    folder = tmp_path / "out" / "structures"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "a.cif")
    (folder / "b.cif").write_text(nacl_cif())
    pre = Prevalidator(tmp_path / "out", Limits())
    worker = threading.Thread(target=pre.scan, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive() and len(pre.parsed) == 1


@pytest.mark.parametrize("formula_column", [False, True])
def test_replay_indexes_its_source_split_once(tmp_path, monkeypatch, formula_column):
    """CSP for many formulas reads each row of the split at most once, not once per formula
    (with a formula column, only the rows of the requested formulas)."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "containers" / "common"))
    monkeypatch.syspath_prepend(str(ROOT / "containers" / "replay"))
    sys.modules.pop("adapter", None)
    adapter = importlib.import_module("adapter")
    import gencsp_helper as g

    source = pd.read_csv(MIRROR / "perov_5" / "val.csv", nrows=300)
    source[["material_id", "cif", "formula"] if formula_column else ["material_id", "cif"]].to_csv(
        tmp_path / "train.csv", index=False)
    from pymatgen.core import Composition, Structure

    formulas = list(dict.fromkeys(source["formula"]))[:8]
    targets = []
    for i, formula in enumerate(formulas):
        counts = Composition(formula).get_el_amt_dict()
        targets.append({"id": f"t{i}", "formula": Composition(formula).reduced_formula, "samples": 1,
                        "composition": {k: int(v) for k, v in counts.items()}, "num_atoms": int(sum(counts.values()))})
    req = {"contract_version": "1.0", "task": "csp", "seed": 0, "targets": targets,
           "data": {"train": str(tmp_path / "train.csv")}, "options": {"source_split": "train"}}
    (tmp_path / "request.json").write_text(json.dumps(req))
    calls = []
    original = Structure.from_str

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(Structure, "from_str", counting)
    monkeypatch.setenv("GENCSP_PATH_MAP", json.dumps({}))
    session = g.Session(str(tmp_path / "request.json"), str(tmp_path / "out"), {"name": "replay"})
    session.data_path = lambda split: str(tmp_path / "train.csv")
    adapter.sample(session)
    assert len(calls) <= (source["formula"].isin(formulas).sum() if formula_column else len(source))
    assert sum(1 for r in session.records.values() if r["status"] == "ok") == len(formulas)


def test_the_alarm_limit_survives_pymatgens_catch_per_data_block():
    """parse_cif in a main thread (evaluation workers): a timeout, not a parse error after every block."""
    from orchestrator.structures import StructureError, parse_cif

    start = time.monotonic()
    with pytest.raises(StructureError) as info:
        parse_cif(slow_cif(), seconds=1.0)
    assert info.value.reason == "timeout" and time.monotonic() - start < 4


def test_locks_are_taken_over_only_from_dead_holders(tmp_path, monkeypatch):
    from orchestrator import locks

    lock = locks.FileLock(tmp_path / "x.lock", "thing")
    assert lock.try_acquire()
    other = locks.FileLock(tmp_path / "x.lock", "thing")
    assert not other.try_acquire() and other.holder()["pid"] == os.getpid()  # a live holder keeps it
    lock.release()
    assert not (tmp_path / "x.lock").exists()
    # a holder on this host that died (a pid that ran and ended)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "x.lock").write_text(json.dumps({"host": __import__("socket").gethostname(),
                                                 "pid": int(dead.stdout), "token": "t1"}))
    assert other.try_acquire()
    other.release()
    # another host: stale once its heartbeat has not moved for STALE_AFTER seconds of our clock
    (tmp_path / "x.lock").write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "token": "t2"}))
    monkeypatch.setattr(locks, "STALE_AFTER", 0.5)
    waiter = locks.FileLock(tmp_path / "x.lock", "thing")
    assert not waiter.try_acquire()  # a fresh heartbeat
    time.sleep(0.7)
    assert waiter.try_acquire() and json.loads((tmp_path / "x.lock").read_text())["token"] == waiter.token
    waiter.release()
