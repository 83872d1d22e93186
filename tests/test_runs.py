"""Run directory: planning, provenance, atomic writes, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import ROOT
from orchestrator import models
from orchestrator.atomic import atomic_open, write_text
from orchestrator.collect import collect
from orchestrator.executors.local import ShardPolicy, run_shards
from orchestrator.plan import plan
from orchestrator.runs import Run, RunConfig, RunError, State, pack
from orchestrator.runtimes.local import LocalRuntime
from orchestrator.targets import csp_targets, target_id, unsupported_reason
from schemas import ModelCard, Target, Task


def test_pack_keeps_shards_under_the_size():
    targets = [Target(id=f"t{i}", samples=s) for i, s in enumerate([3, 3, 3, 10, 1])]
    assert [[t.id for t in g] for g in pack(targets, 6)] == [["t0", "t1"], ["t2"], ["t3"], ["t4"]]


def test_targets_hide_the_truth_unless_the_card_requires_it(home):
    from orchestrator import datasets

    frame = datasets.load("mini", "test")
    targets, truths = csp_targets(frame, samples=2)
    assert targets[0].composition == {"Sr": 1, "Ti": 1, "O": 3} and targets[0].num_atoms == 5
    assert targets[0].conditioning is None and truths[0].space_group is None
    targets, truths = csp_targets(frame, oracle=("space_group",))
    assert targets[0].conditioning.space_group == 221 and targets[0].conditioning.wyckoff is None
    targets, truths = csp_targets(frame, oracle=("space_group", "wyckoff"))
    sites = {(s.element, s.letter, s.multiplicity) for s in targets[0].conditioning.wyckoff}
    assert sites == {("Sr", "b", 1), ("Ti", "a", 1), ("O", "d", 3)}
    assert [(s.element, s.letter, s.multiplicity) for s in targets[2].conditioning.wyckoff] == [
        ("Li", "c", 8), ("O", "a", 4)]
    assert target_id("mp-1234/x y") == "mp-1234_x_y"


def test_unsupported_targets_are_explained():
    card = ModelCard(name="gan", description="d", family="gan", tasks=["csp"], licence="MIT",
                     requires=["space_group"], limits={"space_groups": [225], "max_elements": 3})
    four = Target(id="a", composition={"Li": 1, "Fe": 1, "P": 1, "O": 4}, conditioning={"space_group": 225})
    assert "4 elements" in unsupported_reason(four, card)
    wrong = Target(id="b", composition={"Na": 1, "Cl": 1}, conditioning={"space_group": 62})
    assert "space group 62" in unsupported_reason(wrong, card)
    assert unsupported_reason(Target(id="c", composition={"Na": 1}, conditioning={"space_group": 225}), card) is None


def config(**kw):
    base = dict(model="random_search", dataset="mini", split="test", task=Task.csp, shard_size=2, seed=3)
    return RunConfig(**{**base, **kw})


def test_plan_writes_provenance_and_resumes_the_same_run(home, tmp_path):
    card = models.get("random_search")
    run, resumed = plan(config(), card, tmp_path / "runs")
    assert not resumed and len(run.shards()) == 3
    info = run.info
    assert info["dataset"]["sha256"] and info["dataset"]["rows"] == 6
    assert set(info["libraries"]) >= {"pymatgen", "matminer", "smact"}
    assert info["model_card"]["name"] == "random_search" and info["config"]["seed"] == 3
    assert info["oracle"] == [] and info["host"]["hostname"]
    assert run.truth()["material_id"].tolist()[0] == "mini-00-SrTiO3"
    again, resumed = plan(config(), card, tmp_path / "runs")
    assert resumed and again.path == run.path
    assert not list((tmp_path / "runs").glob(".*creating"))
    # same folder name, other configuration: refused
    (tmp_path / "runs" / config(seed=4).run_id()).mkdir()
    write_text(tmp_path / "runs" / config(seed=4).run_id() / "run.json", json.dumps({"config_key": "x"}))
    with pytest.raises(RunError, match="another configuration"):
        plan(config(seed=4), card, tmp_path / "runs")


def test_resume_never_redoes_finished_shards(home, tmp_path):
    card = models.get("random_search")
    run, _ = plan(config(), card, tmp_path / "runs")
    first, second, third = run.shards()
    runtime = LocalRuntime()
    states = run_shards(run, runtime, card, progress=False)
    assert [s["status"] for s in states] == ["done"] * 3
    reference = collect(run)
    done_at = {s.index: s.state()["updated"] for s in run.shards()}
    cif_before = (first.out_dir / "structures").iterdir().__next__().read_text()
    # as if the run had been killed while the second shard ran: it restarts from a clean folder
    second.set_state(State.running)
    (second.out_dir / "partial.tmp").write_text("half")
    run_shards(run, runtime, card, progress=False)
    assert first.state()["updated"] == done_at[first.index] and third.state()["updated"] == done_at[third.index]
    assert second.state()["attempts"] == 3 and not (second.out_dir / "partial.tmp").exists()
    assert (first.out_dir / "structures").iterdir().__next__().read_text() == cif_before
    again = collect(run)
    pd.testing.assert_frame_equal(reference.drop(columns="seconds"), again.drop(columns="seconds"))
    assert len(again) == 6 and (again["status"] == "accepted").all()


def test_failed_shards_are_retried_then_counted_against_the_model(home, tmp_path):
    card = models.get("random_search").model_copy(update={"name": "no_such_model"})
    run, _ = plan(config(model="no_such_model"), card, tmp_path / "runs")
    run_shards(run, LocalRuntime(), card, ShardPolicy(retries=1), progress=False)
    shard = run.shards()[0]
    assert shard.status == State.failed and shard.state()["attempts"] == 2
    assert "no manifest" in shard.state()["error"]
    frame = collect(run)
    assert set(frame["reason"]) == {"shard_failed"} and len(frame) == 6


def test_a_shard_over_its_time_limit_keeps_what_it_produced(home, tmp_path):
    run, _ = plan(config(shard_size=6), models.get("random_search"), tmp_path / "runs")
    card = models.get("random_search")
    shard = run.shards()[0]
    slow = tmp_path / "containers" / "random_search"
    slow.mkdir(parents=True)
    (slow / "adapter.py").write_text(
        "import time\nimport gencsp_helper as g\ng.FLUSH_EVERY_SECONDS = 0\n"
        "def sample(s):\n    t, i = s.requested()[0]\n    s.save_cif(t['id'], i, open(%r).read())\n"
        "    time.sleep(60)\ng.main(sample, model={'name': 'slow'})\n" % str(_a_cif(home))
    )
    (tmp_path / "containers" / "common").symlink_to(models.folder("random_search").parent / "common")
    states = run_shards(run, LocalRuntime(containers=tmp_path / "containers"), card,
                        ShardPolicy(retries=0, timeout=3), progress=False)
    assert states[0]["runtime_failure"] == "timed out after 3 s" and shard.status == State.failed
    frame = collect(run)
    assert (frame["status"] == "accepted").sum() == 1
    assert set(frame.loc[frame["status"] == "rejected", "reason"]) == {"timeout"}


def _a_cif(home):
    from conftest import nacl_cif

    path = home.parent / "a.cif"
    path.write_text(nacl_cif())
    return path


def test_a_killed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "data.json"
    target.write_text('{"old": true}')
    script = (
        "import sys, time\nsys.path.insert(0, %r)\nfrom orchestrator.atomic import atomic_open\n"
        "with atomic_open(%r) as f:\n    f.write('{\"new\": ')\n    f.flush()\n    print('writing', flush=True)\n"
        "    time.sleep(60)\n" % (str(os.getcwd()), str(target))
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_text() == '{"old": true}'
    # an exception inside the block also leaves the old content and no temporary file
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError
    assert target.read_text() == '{"old": true}'
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "data.json"]
    assert all(name.endswith(".tmp") for name in leftovers) and len(leftovers) <= 1  # only the SIGKILLed one


def test_atomic_writes_follow_the_umask_not_mkstemps_0600(tmp_path):
    """Results on a cluster's project space must be readable by the project's group."""
    import stat

    from orchestrator.atomic import umask

    helper = tmp_path / "helper.py"
    helper.write_text("import sys\nsys.path.insert(0, %r)\nimport gencsp_helper as g\ng.atomic_write(sys.argv[1], 'x')\n"
                      % str(ROOT / "containers" / "common"))
    for mask in (0o022, 0o007):
        previous = os.umask(mask)
        try:
            assert umask() == mask
            write_text(tmp_path / "ours.txt", "x")
            subprocess.run([sys.executable, str(helper), str(tmp_path / "theirs.txt")], check=True)
        finally:
            os.umask(previous)
        for name in ("ours.txt", "theirs.txt"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def test_run_requires_run_json(tmp_path):
    with pytest.raises(RunError, match="not a run directory"):
        Run(tmp_path)


def test_killing_bench_and_running_it_again_gives_identical_results(home, tmp_path):
    """SIGKILL the whole `gencsp bench` process group mid-run, run the same command again."""
    import json as _json

    command = [sys.executable, "-m", "orchestrator", "bench", "--model", "random_search", "--dataset", "perov_5",
               "--limit", "8", "--shard-size", "2", "--runtime", "local", "--run-dir"]
    reference = subprocess.run([*command, str(tmp_path / "a")], capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr
    proc = subprocess.Popen([*command, str(tmp_path / "b")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    shards = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until one shard is done and another has started
        states = [_json.loads(p.read_text())["status"] for p in (tmp_path / "b").glob("*/shards/*/state.json")]
        if states.count("done") >= 1 and "running" in states:
            shards = states
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert shards is not None, "the run never reached a half-finished state"
    again = subprocess.run([*command, str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "resuming run" in again.stdout.replace("\n", "")
    (a,) = (tmp_path / "a").iterdir()
    (b,) = (tmp_path / "b").iterdir()
    first = pd.read_parquet(a / "structures.parquet").drop(columns="seconds")
    second = pd.read_parquet(b / "structures.parquet").drop(columns="seconds")
    pd.testing.assert_frame_equal(first, second)
    assert (second["status"] == "accepted").all() and len(second) == 8
